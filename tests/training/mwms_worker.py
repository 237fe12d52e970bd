"""One worker of a 2-worker MultiWorkerMirroredStrategy on this machine
(tests/training/test_distributed.py): `python mwms_worker.py INDEX PORT0 PORT1 DIR` trains
tests/training/distributed.dnet's Scorer from DIR/init.safetensors on its half of each
global batch of DIR/data.npz with the generated `make_distributed_step`, and writes
DIR/worker<INDEX>.safetensors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


def main(index: int, ports: list[str], out: Path, batch: int) -> None:
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )
    import tensorflow as tf

    from dualnet.backends.keras.backend import KERAS
    from dualnet.compiler import load
    from dualnet.training.engines import generated

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    program = load(str(Path(__file__).with_name("distributed.dnet")))
    code = generated(program, program.check("Scorer").training, "keras")
    save, restore = KERAS.weights_io()
    with strategy.scope():
        model = program.keras("Scorer")
        restore(model, str(out / "init.safetensors"))
        code["compile_for_training"](model)
    step = code["make_distributed_step"](model, strategy)
    data, share = np.load(out / "data.npz"), batch // len(ports)
    for start in range(index * share, len(data["x"]), batch):
        step(data["x"][start : start + share], data["labels"][start : start + share])
    save(model, str(out / f"worker{index}.safetensors"))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:4], Path(sys.argv[4]), int(sys.argv[5]))
