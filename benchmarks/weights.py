"""solar weight surgery vs mergekit on the same files, in one run: time, peak RSS, ratios.

    python benchmarks/weights.py [--workdir /tmp/solar-bench] [--hidden 1024 --layers 24]
                                 [--repeat 3]

Generates two random Llama checkpoints (hidden 1024, 24 layers, vocab 32000, fp32: ≈1.4 GB each)
once, then times each command as a child process (peak RSS from wait4's rusage of that child):
solar DUS / average / slerp, mergekit passthrough / linear / slerp, and the I/O floors (copying
the same bytes with cp), each the best of --repeat interleaved runs. mergekit is a bench-only
dependency. Targets (issue 3): ≥ 2× faster than mergekit, ≤ 0.5× its peak RSS, within 1.5× of
the copy floor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def measure(cmd: list[str] | str) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of one child process, which must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, shell=isinstance(cmd, str), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def mergekit_config(kind: str, a: Path, b: Path, n: int, m: int) -> str:
    if kind == "dus":
        return (f"slices:\n  - sources: [{{model: {a}, layer_range: [0, {n - m}]}}]\n"
                f"  - sources: [{{model: {a}, layer_range: [{m}, {n}]}}]\n"
                "merge_method: passthrough\ndtype: float32\n")
    if kind == "average":
        return (f"models:\n  - model: {a}\n    parameters: {{weight: 0.5}}\n"
                f"  - model: {b}\n    parameters: {{weight: 0.5}}\n"
                "merge_method: linear\ndtype: float32\n")
    return (f"models:\n  - model: {a}\n  - model: {b}\nmerge_method: slerp\nbase_model: {a}\n"
            "parameters: {t: 0.5}\ndtype: float32\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", default="/tmp/solar-bench")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--intermediate", type=int, default=2560)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--m", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3,
                   help="interleaved runs of every command; the best time and the worst peak "
                        "RSS are reported")
    args = p.parse_args()
    work = Path(args.workdir)
    a, b = work / "model_a", work / "model_b"
    for seed, path in ((1, a), (2, b)):
        if not (path / "config.json").is_file():
            print(f"generating {path} ...", flush=True)
            # In a child: this process stays small (a fork counts the parent's RSS in the
            # child's ru_maxrss until exec, so a parent holding torch would inflate every figure).
            subprocess.run([sys.executable, "-c", "from solar.weights.synthetic import "
                            f"write_random_llama as w; w('{path}', hidden={args.hidden}, "
                            f"layers={args.layers}, vocab={args.vocab}, "
                            f"intermediate={args.intermediate}, heads=16, seed={seed})"],
                           check=True)
    size = sum(f.stat().st_size for f in a.glob("*.safetensors")) / 1e9
    print(f"inputs: 2 x {size:.2f} GB fp32 ({args.layers} layers, hidden {args.hidden}); "
          f"DUS m={args.m}; {os.cpu_count()} CPUs (shared with other users: figures are noisy); "
          f"best of {args.repeat} interleaved runs")
    subprocess.run(["cat", *map(str, a.glob("*.safetensors")), *map(str, b.glob("*.safetensors"))],
                   stdout=subprocess.DEVNULL, check=True)  # warm the page cache for everyone
    out, runs = work / "out", work / "runs"
    py = sys.executable
    solar = {
        "dus": [py, "-m", "solar.upscale", f"model.pretrained={a}", f"upscale.m={args.m}",
                "upscale.progress=false"],
        "average": [py, "-m", "solar.merge", "+merge=average", f"merge.models=[{a},{b}]",
                    "output.progress=false"],
        "slerp": [py, "-m", "solar.merge", "+merge=slerp", f"merge.models=[{a},{b}]",
                  "merge.t=0.5", "output.progress=false"],
    }
    mergekit_bin = shutil.which("mergekit-yaml") or str(Path(py).parent / "mergekit-yaml")
    rows = []
    for kind, cmd in solar.items():
        cfg = work / f"mergekit_{kind}.yml"
        cfg.write_text(mergekit_config(kind, a, b, args.layers, args.m))
        # Interleaved repetitions, best time of each: other users' load only ever adds time, so
        # the minimum is the least disturbed estimate of every side (as timeit reports).
        t_s = t_cp = t_rw = t_m = float("inf")
        r_s = r_m = 0.0
        for _ in range(args.repeat):
            shutil.rmtree(runs, ignore_errors=True)
            t, r = measure(cmd + [f"paths.runs={runs}", "run.name=bench"])
            t_s, r_s = min(t_s, t), max(r_s, r)
            produced = runs / "paper" / "bench" / "model"
            # I/O floor: read what the transform reads and write what it writes, with cat/cp.
            inputs = " ".join(str(f) for f in a.glob("*.safetensors")) if kind == "dus" else \
                " ".join(str(f) for d in (a, b) for f in d.glob("*.safetensors"))
            # cp copies inside the kernel (copy_file_range, as solar's DUS does); dd goes through
            # user-space buffers like any writer of computed bytes (merges, mergekit).
            shutil.rmtree(out, ignore_errors=True)
            t_cp = min(t_cp, measure(f"cat {inputs} > /dev/null && cp -r {produced} {out}")[0])
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            t_rw = min(t_rw, measure(f"cat {inputs} > /dev/null && for f in {produced}/*; do "
                                     f"dd if=$f of={out}/$(basename $f) bs=16M status=none; "
                                     "done")[0])
            shutil.rmtree(out, ignore_errors=True)
            t, r = measure([mergekit_bin, str(cfg), str(out), "--no-copy-tokenizer", "--quiet",
                            "--no-write-model-card"])
            t_m, r_m = min(t_m, t), max(r_m, r)
            shutil.rmtree(out, ignore_errors=True)
        t_f = t_cp if kind == "dus" else t_rw
        rows.append((kind, t_s, r_s, t_m, r_m, t_f))
        print(f"{kind:8s} floors: dd (read/write) {t_rw:.1f} s; the ratio uses "
              f"{'cp' if kind == 'dus' else 'dd'} {t_f:.1f} s", flush=True)
        print(f"{kind:8s} solar {t_s:6.1f} s {r_s:5.2f} GB | mergekit {t_m:6.1f} s {r_m:5.2f} GB"
              f" | floor {t_f:5.1f} s || speed-up {t_m / t_s:4.1f}x (target >= 2), "
              f"RSS {r_s / r_m:4.2f}x (<= 0.5), vs floor {t_s / t_f:4.2f}x (<= 1.5)", flush=True)
    shutil.rmtree(runs, ignore_errors=True)
    print("\n| op | solar s | solar GB | mergekit s | mergekit GB | floor s | speed-up | RSS ratio "
          "| vs floor |\n|---|---|---|---|---|---|---|---|---|")
    for kind, t_s, r_s, t_m, r_m, t_f in rows:
        print(f"| {kind} | {t_s:.1f} | {r_s:.2f} | {t_m:.1f} | {r_m:.2f} | {t_f:.1f} | "
              f"{t_m / t_s:.1f}x | {r_s / r_m:.2f}x | {t_s / t_f:.2f}x |")


if __name__ == "__main__":
    main()
