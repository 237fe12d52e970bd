"""`dualnet train --distributed N` (docs/training.md, "Distributed"). PyTorch: N gloo
processes on this machine, each one the same `dualnet train` command with torchrun's
environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), the generated `train_step` on the
rank's share of each global batch under DistributedDataParallel. Keras: one process, the
model compiled under `tf.distribute.MirroredStrategy` over N devices (the GPUs when there
are N, else N logical CPU devices), which splits each global batch itself; with
`--multi-worker`, N processes as for PyTorch, each a worker of a
`tf.distribute.MultiWorkerMirroredStrategy` named in its TF_CONFIG."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

from dualnet.diagnostics import error, option

TORCHRUN = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched(workers: bool = False) -> bool:
    """Whether this process is one of a torchrun-style group (ours or torchrun's); with
    `workers`, one of a TF_CONFIG's workers."""
    if workers:
        return "TF_CONFIG" in os.environ
    return all(name in os.environ for name in TORCHRUN)


def follower() -> bool:
    """Whether this process is a rank after the first of such a group, or a worker after
    the first (it prints nothing)."""
    if launched():
        return os.environ["RANK"] != "0"
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    return task.get("index", 0) != 0


def launch(argv: list[str], processes: int, workers: bool = False) -> int:
    """Run `dualnet <argv>` as `processes` ranks on this machine until all have exited (a
    rank failing stops the others, which would wait for it); the first non-zero exit
    status. Ctrl-C reaches every rank from the terminal: rank 0 checkpoints. With
    `workers`, each rank also gets a TF_CONFIG naming it a worker of all of them."""
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(processes)]}

    def env(rank: int) -> dict[str, str]:
        out = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes)}
        if workers:
            task = {"type": "worker", "index": rank}
            out["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
        return out

    ranks = [
        subprocess.Popen([sys.executable, "-m", "dualnet", *argv], env=env(r))
        for r in range(processes)
    ]
    while any(p.poll() is None for p in ranks):
        try:
            time.sleep(0.1)
        except KeyboardInterrupt:
            continue
        if any(p.returncode for p in ranks):
            for p in ranks:
                if p.poll() is None:
                    p.terminate()
    return next((p.returncode for p in ranks if p.returncode), 0)


def free_port() -> int:
    """A TCP port free on this machine now, for rank 0's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torch_group(processes: int) -> tuple[int, int]:
    """Join the gloo group of this torchrun-style process: (rank, world size); E-INPUT
    outside a group or when its WORLD_SIZE is not `processes`."""
    import torch.distributed as dist

    if not launched():
        raise error(
            "E-INPUT",
            f"--distributed {processes} outside a group of processes",
            option("--distributed"),
            notes=[
                "start the ranks with `dualnet train --distributed N` or torchrun, which "
                f"set {', '.join(TORCHRUN)}"
            ],
        )
    world = int(os.environ["WORLD_SIZE"])
    if world != processes:
        raise error(
            "E-INPUT",
            f"--distributed {processes} in a group of {world} processes (WORLD_SIZE)",
            option("--distributed"),
        )
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), world


def shard(batch: dict[str, np.ndarray], rank: int, world: int) -> dict[str, np.ndarray]:
    """The rank's contiguous share of a global batch (`np.array_split`'s: sizes differ by
    at most one)."""
    return {name: np.array_split(array, world)[rank] for name, array in batch.items()}


def global_logs(logs: dict[str, float], size: int) -> dict[str, float]:
    """Each rank's batch logs averaged over the global batch, weighted by the ranks'
    example counts (what one process logs for the whole batch when the logs are means)."""
    import torch
    import torch.distributed as dist

    keys = sorted(logs)
    sums = torch.tensor([*(logs[k] * size for k in keys), size], dtype=torch.float64)
    dist.all_reduce(sums)
    return {k: float(v / sums[-1]) for k, v in zip(keys, sums[:-1], strict=True)}


def keras_strategy(replicas: int):
    """A MirroredStrategy over `replicas` GPUs when there are that many, else over that many
    logical CPU devices (set before TensorFlow initialises its devices)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= replicas:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(replicas)])
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas
    )
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])


def keras_workers(processes: int):
    """This process's MultiWorkerMirroredStrategy, rank and world size from its TF_CONFIG;
    E-INPUT without one, or when it names another number of workers than `processes`."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = config.get("cluster", {}).get("worker", [])
    if not workers or config.get("task", {}).get("type") != "worker":
        raise error(
            "E-INPUT",
            f"--distributed {processes} --multi-worker outside a group of workers",
            option("--multi-worker"),
            notes=[
                "start the workers with `dualnet train --distributed N --multi-worker`, or "
                "give each a TF_CONFIG naming the cluster's workers and its own index"
            ],
        )
    if len(workers) != processes:
        raise error(
            "E-INPUT",
            f"--distributed {processes} in a cluster of {len(workers)} workers (TF_CONFIG)",
            option("--distributed"),
        )
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return strategy, int(config["task"]["index"]), len(workers)
