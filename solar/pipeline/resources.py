"""Slurm resources of a node: the scale's ``resources.<stage>`` plus the site's ``cluster.*``.

Lightning's SLURMEnvironment takes its ranks from Slurm and refuses a job whose tasks per node
differ from ``trainer.devices`` or whose node count differs from ``trainer.num_nodes``, so a
contradiction is reported here, before anything is submitted, naming the keys.
"""

from __future__ import annotations

from omegaconf import DictConfig


def check(node: str, res: dict, trainer: DictConfig | None) -> list[str]:
    """Errors of one node's resources (against its composed trainer config, for training)."""
    errors = []
    for key in ("nodes", "tasks_per_node", "cpus_per_task", "timeout_min"):
        value = res.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            errors.append(f"node '{node}': `resources.*.{key}` must be an integer > 0 "
                          f"(got {value!r})")
    if errors or trainer is None:
        return errors
    devices, gpus = trainer.get("devices"), res.get("gpus_per_node")
    if isinstance(devices, int) and devices != res["tasks_per_node"]:
        errors.append(f"node '{node}': `resources.train.tasks_per_node`={res['tasks_per_node']} "
                      f"but `trainer.devices`={devices}: Lightning needs one task per device")
    elif devices == "auto" and gpus and gpus != res["tasks_per_node"]:
        errors.append(f"node '{node}': `resources.train.tasks_per_node`={res['tasks_per_node']} "
                      f"but `trainer.devices`=auto uses all {gpus} GPUs of the job "
                      "(`resources.train.gpus_per_node`): one task per GPU is needed")
    if trainer.get("num_nodes") != res["nodes"]:
        errors.append(f"node '{node}': `resources.train.nodes`={res['nodes']} but "
                      f"`trainer.num_nodes`={trainer.get('num_nodes')}")
    return errors


def slurm_parameters(res: dict, cluster: dict, job_name: str) -> dict:
    """submitit.SlurmExecutor parameters (sbatch's names) of a node."""
    params = dict(job_name=job_name, nodes=res["nodes"], ntasks_per_node=res["tasks_per_node"],
                  cpus_per_task=res["cpus_per_task"], time=res["timeout_min"],
                  signal_delay_s=cluster["signal_delay_s"], setup=list(cluster.get("setup") or []))
    if res.get("gpus_per_node"):
        params["gpus_per_node"] = res["gpus_per_node"]
    if res.get("mem_gb"):
        params["mem"] = f"{res['mem_gb']}GB"
    for key in ("partition", "account", "qos"):
        if cluster.get(key):
            params[key] = cluster[key]
    return params
