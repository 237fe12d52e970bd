"""Data-parallel training (docs/training.md, "Distributed"): the generated PyTorch
`train_step` under DistributedDataParallel (2 gloo processes) keeps the replicas identical,
all-reduces only before an optimiser step (`no_sync` while accumulating) and takes the mean
of the ranks' losses (with `accumulate` and `ignore_index`: each rank's mean over its own
non-ignored labels); `dualnet train --distributed 2` equals one process
with the same global batch, in PyTorch (2 processes) and in Keras (MirroredStrategy over 2
logical CPU devices, metrics included; with accumulation too, which the generated step does
in place of Keras's); the generated Keras `make_distributed_step` under
MultiWorkerMirroredStrategy (2 worker processes) equals `fit`'s step with the global batch;
what cannot be shared is E-INPUT."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dualnet.cli import main
from dualnet.compiler import load
from dualnet.io.weights import read_arrays
from dualnet.training.distributed import free_port
from dualnet.training.engines import generated
from dualnet.verify.train_parity import relative

torch = pytest.importorskip("torch")

FILE = str(Path(__file__).with_name("distributed.dnet"))
ROOT = Path(__file__).parents[2]
BATCH, STEPS = 8, 4  # global batch, batches (two optimiser steps: accumulate = 2)


def classification(n: int, ignored: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """`n` examples of 6 features, labels 0..3 (0..4 when `ignored`: 4 is ignore_index)."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((n, 6)).astype(np.float32),
        "labels": rng.integers(0, 5 if ignored else 4, n),
    }


def _rank(rank: int, world: int, port: int, tmp: str) -> None:
    """One DDP process: the generated train_step on its half of each global batch."""
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    program = load(FILE)
    code = generated(program, program.check("Classifier").training, "torch")
    model = program.torch("Classifier")
    model.load_state_dict(torch.load(Path(tmp) / "init.pt"))
    ddp = DistributedDataParallel(model)
    reduced = []  # the batches whose backward all-reduced

    def counted(state, bucket):
        reduced.append(b)
        return allreduce_hook(state, bucket)

    ddp.register_comm_hook(None, counted)
    optimizer = code["make_optimizer"](model)
    data = np.load(Path(tmp) / "data.npz")
    share = BATCH // world
    for b in range(STEPS):
        start = b * BATCH + rank * share
        x, y = (torch.from_numpy(data[k][start : start + share]) for k in ("x", "labels"))
        code["train_step"](ddp, optimizer, [x], [y])
    torch.save(model.state_dict(), Path(tmp) / f"rank{rank}.pt")
    (Path(tmp) / f"rank{rank}.json").write_text(json.dumps(sorted(set(reduced))))
    # Free the process group while Python is alive: DDP's reducer holds it, in a reference
    # cycle, and a gloo thread that is still releasing the last all-reduce needs the GIL,
    # which it cannot take during interpreter shutdown (SIGABRT, "terminate called
    # without an active exception").
    del ddp
    gc.collect()
    dist.destroy_process_group()


def reference(data: dict, init: dict, shares: int) -> dict:
    """One process, PyTorch's own cross_entropy: each batch's loss the mean of the losses of
    its `shares` halves (1: of the whole batch)."""
    program = load(FILE)
    code = generated(program, program.check("Classifier").training, "torch")
    model = program.torch("Classifier")
    model.load_state_dict(init)
    optimizer = code["make_optimizer"](model)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["labels"])
    for b in range(STEPS):
        if b % 2 == 0:  # ACCUMULATE = 2: an optimiser step's first batch
            optimizer.zero_grad()
        parts = zip(
            x[b * BATCH : (b + 1) * BATCH].chunk(shares),
            y[b * BATCH : (b + 1) * BATCH].chunk(shares),
            strict=True,
        )
        loss = sum(
            torch.nn.functional.cross_entropy(model(xs), ys, ignore_index=4) for xs, ys in parts
        )
        (loss / shares / 2).backward()  # ACCUMULATE = 2
        optimizer.step()
    return model.state_dict()


def test_ddp_replicas_agree_and_average_the_ranks_losses(tmp_path):
    data = classification(BATCH * STEPS, ignored=True)
    halves = data["labels"].reshape(STEPS, 2, BATCH // 2) == 4
    assert (halves[:, 0].sum(1) != halves[:, 1].sum(1)).any()  # the means differ
    np.savez(tmp_path / "data.npz", **data)
    torch.manual_seed(0)
    init = load(FILE).torch("Classifier").state_dict()
    torch.save(init, tmp_path / "init.pt")
    torch.multiprocessing.spawn(_rank, (2, free_port(), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    per_rank, whole = reference(data, init, 2), reference(data, init, 1)
    for r in range(2):  # accumulate = 2: only the backward before each step all-reduces
        assert json.loads((tmp_path / f"rank{r}.json").read_text()) == [1, 3]
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
        assert relative(value.numpy(), per_rank[name].numpy()) <= 1e-6, name
    assert max(relative(ranks[0][n].numpy(), whole[n].numpy()) for n in whole) > 1e-4


def _closed_rank(rank: int, port: int, tmp: str) -> None:
    """One rank of a torchrun-style group: a TorchEngine trains a batch and closes."""
    import weakref

    import torch.distributed as dist

    from dualnet.training.codegen import roles
    from dualnet.training.engines import TorchEngine

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    program = load(FILE)
    spec = program.check("Classifier").training
    engine = TorchEngine(program, roles(program, spec), spec, f"{tmp}/init.safetensors", 2)
    engine.train(classification(BATCH, ignored=False))
    ddp = weakref.ref(engine.stepped)
    engine.close()
    assert ddp() is None, "DDP (and the process group it holds) outlived close()"
    assert not dist.is_initialized()


def test_a_torch_engine_frees_ddp_and_leaves_the_group_it_joined(tmp_path):
    """Else a gloo thread may still be releasing the last all-reduce when the interpreter
    shuts down, and the finished rank aborts."""
    from dualnet.backends.initial import initial_weights
    from dualnet.io.weights import write_state
    from dualnet.training.codegen import roles

    program = load(FILE)
    named = roles(program, program.check("Classifier").training)
    write_state(initial_weights(named.model, None, 0, None), str(tmp_path / "init.safetensors"))
    torch.multiprocessing.spawn(_closed_rank, (free_port(), str(tmp_path)), nprocs=2)


def cli_train(tmp_path, run: str, *extra: str, separate: bool = False) -> dict:
    """`dualnet train tests/training/distributed.dnet ...`: the run's metrics.json and
    weights; `separate`: in a fresh process (TensorFlow sets its devices once)."""
    args = [
        "train",
        FILE,
        "--data",
        str(tmp_path / "d.npz"),
        "--val",
        str(tmp_path / "v.npz"),
        "--epochs",
        "2",
        "--batch-size",
        str(BATCH),
        "--no-progress",
        "-o",
        str(tmp_path / run),
        *extra,
    ]
    if separate:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "dualnet", *args], env=env, check=False)
        assert done.returncode == 0
    else:
        assert main(args) == 0
    out = tmp_path / run
    last = json.loads((out / "checkpoints" / "last.json").read_text())
    return {
        "metrics": json.loads((out / "metrics.json").read_text()),
        "weights": read_arrays(
            str(out / "checkpoints" / last["checkpoint"] / "weights.safetensors")
        ),
    }


def assert_same_run(one: dict, two: dict) -> None:
    for name, value in one["weights"].items():
        assert relative(two["weights"][name], value) <= 1e-6, name
    for a, b in zip(one["metrics"]["epochs"], two["metrics"]["epochs"], strict=True):
        for part in ("train", "val"):
            assert a[part].keys() == b[part].keys()
            for key, value in a[part].items():
                assert abs(b[part][key] - value) <= 1e-6, (part, key)
    losses = [np.array(r["metrics"]["batch_loss"]) for r in (one, two)]
    assert relative(losses[1], losses[0]) <= 1e-6


@pytest.mark.parametrize(
    ("backend", "model", "extra", "where"),
    [
        ("torch", "Classifier", (), "DistributedDataParallel over 2 gloo processes"),
        ("keras", "Scorer", (), "MirroredStrategy over"),
        (
            "keras",
            "Scorer",
            ("--multi-worker",),
            "MultiWorkerMirroredStrategy over 2 worker processes",
        ),
        ("keras", "Classifier", (), "MirroredStrategy over"),
        (
            "keras",
            "Classifier",
            ("--multi-worker",),
            "MultiWorkerMirroredStrategy over 2 worker processes",
        ),
    ],
    ids=["torch", "keras", "keras workers", "keras accumulate", "keras workers accumulate"],
)
def test_distributed_equals_one_process_with_the_global_batch(
    backend, model, extra, where, tmp_path
):
    pytest.importorskip("keras" if backend == "keras" else "torch")
    np.savez(tmp_path / "d.npz", **classification(40, ignored=False))
    np.savez(tmp_path / "v.npz", **classification(12, ignored=False, seed=1))
    common = ("--backend", backend, "--model", model)
    one = cli_train(tmp_path, "one", *common)
    two = cli_train(tmp_path, "two", *common, "--distributed", "2", *extra, separate=True)
    assert where in two["metrics"]["where"]
    assert_same_run(one, two)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--batch-size", "1"), "a batch of 1 examples cannot be shared by 2 replicas"),
        (("--backend", "keras", "--batch-size", "7"), "cannot be shared by 2 replicas"),
        (("--multi-worker",), "--multi-worker runs Keras workers"),
    ],
    ids=["batch", "last batch", "torch workers"],
)
def test_what_cannot_be_distributed_is_an_input_error(extra, says, tmp_path, capsys):
    np.savez(tmp_path / "d.npz", **classification(15, ignored=False))
    args = ["train", FILE, "--model", "Classifier", "--backend", "torch", "--data"]
    code = main(
        [*args, str(tmp_path / "d.npz"), "--distributed", "2", *extra, "-o", str(tmp_path / "run")]
    )
    assert code == 1
    assert says in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_keras_multi_worker_step_equals_fit_with_the_global_batch(tmp_path):
    pytest.importorskip("keras")
    from dualnet.backends.initial import initial_weights
    from dualnet.io.weights import write_state
    from dualnet.training.codegen import roles
    from dualnet.training.engines import KerasEngine

    data = classification(BATCH * STEPS, ignored=False)
    np.savez(tmp_path / "data.npz", **data)
    program = load(FILE)
    spec = program.check("Scorer").training
    named = roles(program, spec)
    write_state(initial_weights(named.model, None, 0, None), str(tmp_path / "init.safetensors"))
    ports = [str(free_port()), str(free_port())]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    script = str(Path(__file__).with_name("mwms_worker.py"))
    workers = [
        subprocess.Popen(
            [sys.executable, script, str(i), *ports, str(tmp_path), str(BATCH)], env=env
        )
        for i in range(2)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    engine = KerasEngine(program, named, spec, str(tmp_path / "init.safetensors"))
    for b in range(STEPS):  # fit's train step on each global batch
        engine.train({k: v[b * BATCH : (b + 1) * BATCH] for k, v in data.items()})
    engine.save_weights(str(tmp_path / "one.safetensors"))
    one, *two = (
        read_arrays(str(tmp_path / f"{n}.safetensors")) for n in ("one", "worker0", "worker1")
    )
    for name, value in one.items():
        assert np.array_equal(two[0][name], two[1][name]), name
        assert relative(two[0][name], value) <= 1e-6, name


def test_the_torch_entry_point_outside_a_group_is_an_input_error(tmp_path, monkeypatch):
    from dualnet.diagnostics import DualnetError
    from dualnet.training.loop import Options, train

    monkeypatch.delenv("RANK", raising=False)
    program = load(FILE)
    spec = program.check("Scorer").training
    data = classification(16, ignored=False)
    with pytest.raises(DualnetError, match="outside a group of processes"):
        train(program, spec, "torch", tmp_path / "run", data, options=Options(distributed=2))
    assert not (tmp_path / "run").exists()


def test_the_keras_workers_entry_point_outside_a_cluster_is_an_input_error(tmp_path, monkeypatch):
    from dualnet.diagnostics import DualnetError
    from dualnet.training.loop import Options, train

    monkeypatch.delenv("TF_CONFIG", raising=False)
    program = load(FILE)
    spec = program.check("Scorer").training
    data = classification(16, ignored=False)
    options = Options(distributed=2, multi_worker=True)
    with pytest.raises(DualnetError, match="outside a group of workers"):
        train(program, spec, "keras", tmp_path / "run", data, options=options)
    assert not (tmp_path / "run").exists()
