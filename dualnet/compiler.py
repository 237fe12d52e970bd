"""From a checked model to backend source: emission, validation, atomic writing, and the
`dualnet.load(path)` program API."""

from __future__ import annotations

import linecache
import os
import tempfile
from pathlib import Path
from typing import Any

from dualnet.backends import backend
from dualnet.backends.common.selfcheck import check_parameters
from dualnet.backends.common.source_code import validate
from dualnet.backends.initial import initial_weights
from dualnet.backends.onnx.model import onnx_emitted, onnx_model
from dualnet.diagnostics import DualnetError, error, option
from dualnet.extras import needs_extras
from dualnet.frontend import Summary, check_file
from dualnet.io.files import atomic_write, check_output, make_directory, temporary_directory
from dualnet.memory import require_allocatable

LAYOUTS = ("channels_first", "channels_last")


def emit(summary: Summary, target: str, layout: str = "channels_first") -> tuple[str, str]:
    """(source, entry class name) for a checked model; only the chosen backend is imported.
    `layout` (Keras): the interface of the entry model — dualnet's channels-first order, or
    channels-last for image tensors."""
    source_backend = backend(target, option("--target"), kind="source")
    if layout not in LAYOUTS:
        raise error(
            "E-BACKEND",
            f"unknown layout `{layout}`",
            option("--layout"),
            notes=[f"layouts: {', '.join(LAYOUTS)}"],
        )
    source, entry = source_backend.emit(summary.instance, summary.file, layout)
    validate(source, source_backend.imports, summary.instance.span, source_backend.registrations)
    return source, entry


def compile_file(
    path: str,
    target: str,
    out_dir: str,
    model: str | None = None,
    include_dirs: tuple[str, ...] = (),
    layout: str = "channels_first",
    **hyper: Any,
) -> Path:
    """Check `path` with the entry model's `hyper` and write `out_dir/<stem>_<target>.py`;
    raises DualnetError."""
    return write_source(_checked(path, model, include_dirs, hyper or None), target, out_dir, layout)


def write_source(
    summary: Summary, target: str, out_dir: str, layout: str = "channels_first"
) -> Path:
    """Emit a checked model and write `out_dir/<file stem>_<target>.py` atomically (the
    directory is created if missing)."""
    source, _ = emit(summary, target, layout)
    out = Path(out_dir) / f"{Path(summary.file).stem}_{target}.py"
    make_directory(out.parent)
    atomic_write(out, source.encode("utf-8"), protect=summary.files)
    return out


# ---------------------------------------------------------------- ONNX


@needs_extras
def write_onnx(
    summary: Summary,
    out_dir: str,
    weights: str | None = None,
    seed: int = 0,
    opset: int | None = None,
    max_params: int | None = None,
) -> Path:
    """Emit and write `out_dir/<model name>.onnx` atomically. A model over 2 GB keeps its
    tensors in the sibling file `<model name>.onnx.data` (a fixed name, never one taken from
    the input). The model is not validated (`onnx_model` is): the tests run ONNX's checker
    on what the emitter writes, and `import onnx` would take most of the command's time."""
    emitted = onnx_emitted(summary, weights, seed, opset, max_params)
    make_directory(out_dir)
    out = Path(out_dir) / f"{summary.model}.onnx"
    protect = (*summary.files, *([weights] if weights else []))
    if emitted.parts.tensor_bytes() < PROTOBUF_LIMIT:
        atomic_write(out, emitted.parts.serialized(), protect)
        return out
    import onnx

    data_name = f"{summary.model}.onnx.data"
    for path in (out, out.with_name(data_name)):
        check_output(path, protect)
    with temporary_directory(out_dir) as tmp:
        onnx.save_model(
            emitted.model,
            os.path.join(tmp, out.name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
        )
        os.replace(os.path.join(tmp, data_name), out.with_name(data_name))
        os.replace(os.path.join(tmp, out.name), out)
    return out


PROTOBUF_LIMIT = 2**31 - 2**20  # protobuf's 2 GB, with room for the graph


def _checked(path: str, model: str | None, include_dirs, hyper) -> Summary:
    summary = check_file(path, model, tuple(include_dirs), hyper)
    if not summary.ok:
        raise DualnetError(summary.diagnostics)
    return summary


class Program:
    """A .dnet file, ready to build models in a framework. A model with more parameters and
    buffer elements than `max_params` (default: `dualnet.memory.max_params()`) is refused
    before anything is allocated. `hyper`: hyperparameters of every model asked for (as
    `--hyper`), under those a method is given."""

    def __init__(
        self,
        path: str,
        include_dirs: tuple[str, ...] = (),
        max_params: int | None = None,
        hyper: dict[str, Any] | None = None,
    ):
        self.path = path
        self.include_dirs = tuple(include_dirs)
        self.max_params = max_params
        self.hyper = dict(hyper or {})

    def check(self, model: str | None = None, **hyper: Any) -> Summary:
        return _checked(self.path, model, self.include_dirs, {**self.hyper, **hyper} or None)

    def source(
        self, target: str, model: str | None = None, layout: str = "channels_first", **hyper: Any
    ) -> str:
        return emit(self.check(model, **hyper), target, layout)[0]

    @needs_extras
    def torch(self, model: str | None = None, seed: int | None = None, **hyper: Any):
        """An instance of the generated nn.Module, built with `hyper`. The source runs under
        a registered file name, so tracebacks show the generated lines. With `seed`, its
        weights are dualnet's seeded initialisation (`dualnet init --seed`), bit for bit the
        tensors `.keras(seed=...)` and `.onnx(seed=...)` get."""
        return self._build("torch", model, "channels_first", hyper, seed)

    @needs_extras
    def keras(
        self,
        model: str | None = None,
        layout: str = "channels_first",
        seed: int | None = None,
        **hyper: Any,
    ):
        """An instance of the generated Keras model (built at construction), its weights
        drawn by Keras with PyTorch's initialisers or, with `seed`, dualnet's seeded
        initialisation (as `.torch(seed=...)`)."""
        return self._build("keras", model, layout, hyper, seed)

    @needs_extras
    def onnx(
        self,
        model: str | None = None,
        weights: str | None = None,
        seed: int = 0,
        opset: int | None = None,
        **hyper: Any,
    ):
        """The ONNX ModelProto (checked), with the tensors of the safetensors file `weights`,
        else a seeded initialisation."""
        return onnx_model(self.check(model, **hyper), weights, seed, opset, self.max_params)

    def _build(
        self, target: str, model: str | None, layout: str, hyper: dict, seed: int | None = None
    ):
        summary = self.check(model, **hyper)
        require_allocatable(summary.instance, self.max_params)
        source, entry = emit(summary, target, layout)
        stem = Path(self.path).stem
        namespace = execute(source, f"{stem}_{target}.py", f"dualnet_generated.{stem}")
        built = namespace[entry]()  # the given hyperparameters are its defaults
        check_parameters(summary, backend(target).shapes(built, summary), target)
        if seed is not None:
            from dualnet.io.weights import write_state

            with tempfile.TemporaryDirectory(prefix="dualnet-init-") as tmp:
                path = os.path.join(tmp, "init.safetensors")
                write_state(initial_weights(summary, None, seed), path)
                backend(target).weights_io()[1](built, path)
        return built


def execute(source: str, name: str, module: str) -> dict[str, Any]:
    """Run generated source as the module `module`, under the file name `<dualnet:name>`
    registered with linecache, so tracebacks show the generated lines."""
    filename = f"<dualnet:{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": module}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own output
    return namespace


def load(path: str, include_dirs: tuple[str, ...] = (), max_params: int | None = None) -> Program:
    """A program for `path`; nothing is checked until a model is asked for."""
    return Program(path, include_dirs, max_params)
