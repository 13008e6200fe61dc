"""Per-tensor merge arithmetic: Average, SLERP, TIES, DARE (float32 math, or float64 inputs kept).

Each function takes torch tensors of one parameter (any stored dtype) and returns the merged
tensor in the compute dtype; the caller casts it back to the stored dtype. Semantics follow
mergekit's (linear, slerp, ties, dare) so configs port; see README "Model merging".
"""

from __future__ import annotations

import math

import torch

DOT_THRESHOLD = 0.9995  # |cos| above this: the pair is (anti-)colinear, SLERP degenerates to lerp
NORM_EPS = 1e-8


def _work(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.to(torch.float32)


def average(tensors: list[torch.Tensor], weights: list[float], normalize: bool = True,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """Σ wᵢxᵢ, then ÷ Σ wᵢ when ``normalize``: the first product fills ``out``, the rest accumulate.

    mergekit's `linear` order of operations (weights rounded to the compute dtype, sum first,
    one division last), so the output is bit for bit mergekit's. ``out`` (in the compute dtype)
    lets a caller reuse one buffer for every tensor of a model.
    """
    dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
    w = torch.tensor(weights, dtype=dtype)
    total = w.sum()
    if normalize and not total > 0:
        raise ValueError(f"merge weights {weights} do not sum to a positive number")
    first = tensors[0] if tensors[0].dtype == dtype else tensors[0].to(dtype)
    out = torch.mul(first, w[0], out=out)
    for x, wi in zip(tensors[1:], w[1:]):
        out.add_(x.to(dtype) if x.dtype != dtype else x, alpha=wi.item())
    if normalize and total != 1:  # x / 1 is x: skip a pass over the tensor when weights sum to 1
        out.div_(total)
    return out


def slerp_coefficients(v0: torch.Tensor, v1: torch.Tensor, t: float) -> tuple[float, float]:
    """(c0, c1) with result = c0·v0 + c1·v1, on the original (unnormalised) tensors.

    The norms and the dot product are reductions that torch splits over its intra-op threads, so
    their last bits (hence some output bits) depend on the thread count, as in any torch merge.
    """
    a, b = _work(v0).reshape(-1), _work(v1).reshape(-1)
    if a.numel() == 0:
        return 1 - t, t
    # Three reductions over the original values: ‖a‖, ‖b‖ and a·b; cos = a·b / (‖a‖‖b‖) equals
    # the dot of the normalised copies without materialising them.
    na, nb = torch.linalg.vector_norm(a).item(), torch.linalg.vector_norm(b).item()
    na, nb = (na if na > NORM_EPS else 1.0), (nb if nb > NORM_EPS else 1.0)
    dot = torch.dot(a, b).item() / na / nb
    dot = max(-1.0, min(1.0, dot))
    if abs(dot) > DOT_THRESHOLD:
        return 1 - t, t
    theta = math.acos(dot)
    return math.sin((1 - t) * theta) / math.sin(theta), math.sin(t * theta) / math.sin(theta)


def slerp(v0: torch.Tensor, v1: torch.Tensor, t: float,
          out: torch.Tensor | None = None) -> torch.Tensor:
    """Spherical interpolation of one parameter; t=0 gives ``v0``, t=1 gives ``v1``."""
    c0, c1 = slerp_coefficients(v0, v1, t)
    return average([v0, v1], [c0, c1], normalize=False, out=out)


def magnitude_mask(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the top ``density``·numel entries of |delta| (at least one), as in TIES' trim step."""
    if density >= 1:
        return torch.ones_like(delta, dtype=torch.bool)
    mask = torch.zeros(delta.numel(), dtype=torch.bool)
    if density <= 0 or delta.numel() == 0:
        return mask.view(delta.shape)
    k = max(1, int(density * delta.numel()))
    mask[torch.topk(delta.abs().reshape(-1), k, sorted=False).indices] = True
    return mask.view(delta.shape)


def _disjoint_merge(base: torch.Tensor, deltas: list[torch.Tensor], weights: list[float],
                    consensus: bool, normalize: bool) -> torch.Tensor:
    """base + Σ wᵢδᵢ over (sign-agreeing) models, ÷ Σ of their weights when ``normalize``."""
    weighted = torch.stack([d * w for d, w in zip(deltas, weights)])
    if consensus:  # TIES sign election: the sign of the weighted sum wins (0 counts as +)
        majority = torch.where(weighted.sum(0) >= 0, 1.0, -1.0).to(weighted.dtype)
        keep = weighted.sign() == majority
    else:
        keep = torch.ones_like(weighted, dtype=torch.bool)  # dare_linear: plain weighted sum
    w = torch.tensor(weights, dtype=weighted.dtype).view(-1, *[1] * base.dim())
    mixed = (weighted * keep).sum(0)
    if normalize:
        divisor = (w * keep).sum(0)
        divisor = torch.where(divisor.abs() < NORM_EPS, torch.ones_like(divisor), divisor)
        mixed = mixed / divisor
    return _work(base) + mixed


def ties(base: torch.Tensor, tensors: list[torch.Tensor], weights: list[float], density: float,
         normalize: bool = True) -> torch.Tensor:
    """TIES: trim each task vector to its top-density magnitudes, elect signs, disjoint mean."""
    b = _work(base)
    deltas = []
    for x in tensors:
        d = _work(x) - b
        deltas.append(d * magnitude_mask(d, density))
    return _disjoint_merge(base, deltas, weights, consensus=True, normalize=normalize)


def dare(base: torch.Tensor, tensors: list[torch.Tensor], weights: list[float], drop_rate: float,
         generator: torch.Generator, rescale: bool = True, consensus: bool = False,
         normalize: bool = False) -> torch.Tensor:
    """DARE: drop each delta entry with probability ``drop_rate``, rescale survivors by 1/(1−p).

    Then a weighted sum (mergekit `dare_linear`), or TIES' sign election with ``consensus``
    (`dare_ties`). Not divided by Σ wᵢ unless ``normalize``: mergekit's default for both.
    Deliberate differences from mergekit, equal in expectation and identical at drop_rate 0: the
    mask comes from ``generator`` (seeded per tensor, so a merge is reproducible; mergekit draws
    from the global RNG) and survivors are rescaled by 1/(1−p) (mergekit: by the L1-norm ratio
    of the task vector before and after the drop).
    """
    if not 0 <= drop_rate < 1:
        raise ValueError(f"`merge.drop_rate`={drop_rate} must be in [0, 1)")
    b = _work(base)
    keep_p = 1.0 - drop_rate
    deltas = []
    for x in tensors:
        d = _work(x) - b
        if drop_rate > 0:
            mask = torch.rand(d.shape, generator=generator) < keep_p
            d = d * mask / keep_p if rescale else d * mask
        deltas.append(d)
    return _disjoint_merge(base, deltas, weights, consensus=consensus, normalize=normalize)
