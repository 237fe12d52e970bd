"""The `dualnet` command line: check, ir, init, compile, run, train, parity, gradcheck, ops,
--version.

Exit codes: 0 ok, 1 errors in the input, 2 usage errors, 3 an internal error (a bug).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import sys

from dualnet.backends import BACKENDS
from dualnet.version import __version__

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors exit 2 with a one-line message
        self.print_usage(sys.stderr)
        print(f"dualnet: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dualnet",
        description="Define a neural network once; get the same "
        "model in PyTorch, Keras and ONNX Runtime.",
    )
    parser.add_argument("--version", action="version", version=f"dualnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def source_args(p: argparse.ArgumentParser, many: bool = False) -> None:
        p.add_argument(
            "file",
            metavar="FILE",
            nargs="+" if many else None,
            help="a .dnet source file"
            + ("; several: one summary line each, with their entry models" if many else ""),
        )
        p.add_argument("--model", metavar="NAME", help="entry model (default: the file's last)")
        p.add_argument(
            "-I",
            dest="include",
            metavar="DIR",
            action="append",
            default=[],
            help="also resolve imports in DIR (repeatable)",
        )
        p.add_argument(
            "--hyper",
            metavar="NAME=VALUE",
            action="append",
            default=[],
            help="a hyperparameter of the entry model, VALUE a .dnet literal: 3, 0.5, true, "
            "none, '\"relu\"', '(3, 3)' (repeatable; overrides its default)",
        )

    def max_params_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--max-params",
            type=_count,
            metavar="N",
            help="refuse models with more parameter and buffer elements than N "
            "before allocating them (default: $DUALNET_MAX_PARAMS, else 2e9 or "
            "what a twelfth of this machine's memory holds)",
        )

    def comparison_args(p: argparse.ArgumentParser, seeded: str, batch: int) -> None:
        """The options of the commands that run a model in several backends."""
        p.add_argument(
            "--weights",
            metavar="W.safetensors",
            help="the weights (default: a seeded initialisation whose constant tensors, "
            "zero biases or BatchNorm's statistics, are redrawn so none hides a mistake)",
        )
        p.add_argument(
            "--seed", type=_seed, default=0, metavar="S", help=f"seed of {seeded} (default 0)"
        )
        p.add_argument(
            "--dims",
            metavar=f"B={batch},T=16",
            help=f"sizes of the symbolic dimensions (default: B={batch}, others 8)",
        )
        p.add_argument(
            "--backends",
            default="torch,keras,onnx",
            metavar="LIST",
            type=_backends,
            help="comma-separated (default: torch,keras,onnx)",
        )
        max_params_arg(p)

    def optimizer_args(group, span: str) -> None:
        """--optimizer, --lr and --schedule (a file without a train declaration); cosine
        and one_cycle schedules span `span`."""
        group.add_argument(
            "--optimizer",
            metavar="NAME[:k=v,...]",
            help="a file without a train declaration: SGD, Adam, AdamW, RMSprop or Adagrad "
            "with PyTorch's defaults, options as in torch.optim "
            "(SGD:momentum=0.9,nesterov=True,no_decay_vectors=True,clip_norm=1.0); default SGD",
        )
        group.add_argument(
            "--lr", type=float, metavar="X", help="the learning rate (default: PyTorch's)"
        )
        group.add_argument(
            "--schedule",
            metavar="KIND[:k=v,...]",
            help="constant, step, cosine or one_cycle, per optimiser step as "
            f"torch.optim.lr_scheduler's (cosine and one_cycle span {span}); "
            "warmup_steps=W adds a linear warmup",
        )

    def spec_args(p: argparse.ArgumentParser) -> None:
        """The training options of a file without a `train` declaration."""
        group = p.add_argument_group(
            "training (a file without a train declaration)",
            "the loss and metrics are models of FILE whose forward takes the model's "
            "outputs, then the targets",
        )
        group.add_argument("--loss", metavar="MODEL", help="the loss model (returns f32[])")
        group.add_argument(
            "--metrics", metavar="MODEL", help="the metrics model (returns named f32[] scalars)"
        )
        optimizer_args(group, "the run")
        group.add_argument(
            "--accumulate",
            type=_count,
            default=1,
            metavar="N",
            help="batches per optimiser step, which takes their mean gradient (default 1)",
        )

    check = sub.add_parser("check", help="parse, infer shapes and run the autodiff checks")
    source_args(check)
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument(
        "--summary",
        action="store_true",
        help="per call site: output, multiply-accumulates, output bytes, parameters, "
        "parameter bytes, with totals",
    )
    check.add_argument(
        "--dims", metavar="B=1,T=16", help="--summary: sizes of the symbolic dimensions"
    )
    graph = sub.add_parser("graph", help="draw the model: SVG, PNG or Graphviz DOT")
    source_args(graph)
    graph.add_argument(
        "--depth",
        type=int,
        default=2,
        metavar="N",
        help="open sub-model calls N levels deep; each call below is one box (default 2; 0: "
        "each sub-model the entry model calls is one box)",
    )
    graph.add_argument(
        "--dims", metavar="B=1,T=16", help="sizes of the symbolic dimensions in the labels"
    )
    graph.add_argument(
        "-o", "--output", required=True, metavar="OUT.svg|.png|.dot", help="the file to write"
    )
    ir = sub.add_parser("ir", help="print the typed IR")
    source_args(ir)
    init = sub.add_parser(
        "init", help="write the initial weights (PyTorch's initialisers) to a .safetensors file"
    )
    source_args(init)
    init.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="S",
        help="random seed, an int in [0, 2**64) (default: 0)",
    )
    init.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="W.safetensors",
        help="the weight file to write (replaced atomically)",
    )
    max_params_arg(init)
    comp = sub.add_parser("compile", help="write the model as source for a framework")
    source_args(comp)
    comp.add_argument(
        "--target",
        required=True,
        choices=tuple(BACKENDS),
        help="torch: PyTorch nn.Module source; keras: Keras 3 source; onnx: an "
        "ONNX model <model name>.onnx with its weights",
    )
    comp.add_argument(
        "--layout",
        choices=("channels_first", "channels_last"),
        help="keras: the entry model's image layout (default: channels_first, "
        "the arrays the PyTorch module takes)",
    )
    comp.add_argument(
        "--weights",
        metavar="W.safetensors",
        help="onnx: the weights to embed (default: a seeded initialisation)",
    )
    comp.add_argument(
        "--seed",
        type=_seed,
        metavar="S",
        help="onnx: the seed of the initialisation when no --weights (default 0)",
    )
    comp.add_argument("--opset", type=_opset, metavar="N", help="onnx: the ONNX opset (default 17)")
    comp.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="directory for <file stem>_<target>.py or <model name>.onnx",
    )
    max_params_arg(comp)
    spec_args(comp)
    tr = sub.add_parser(
        "train", help="train a model with the generated training code of one framework"
    )
    source_args(tr)
    tr.add_argument("--backend", required=True, choices=("torch", "keras"))
    tr.add_argument(
        "--data",
        required=True,
        metavar="D.npz|DIR",
        help="the training arrays, named as the model's inputs and the loss's targets "
        "(an .npz file, or a directory of NAME.npy files); axis 0: the examples",
    )
    tr.add_argument("--val", metavar="V.npz|DIR", help="validation arrays, evaluated each epoch")
    tr.add_argument("--epochs", type=_count, default=1, metavar="N", help="default 1")
    tr.add_argument("--batch-size", type=_count, default=32, metavar="B", help="default 32")
    tr.add_argument(
        "--weights", metavar="W.safetensors", help="start from these weights (default: seeded)"
    )
    tr.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="S",
        help="the seed of the initialisation and of the data order (default 0)",
    )
    tr.add_argument("--resume", action="store_true", help="continue RUN_DIR's last checkpoint")
    tr.add_argument("--plot", action="store_true", help="write RUN_DIR/curves.png (matplotlib)")
    tr.add_argument(
        "--no-progress", action="store_true", help="one line per epoch, no progress bar"
    )
    tr.add_argument(
        "--distributed",
        type=_count,
        default=1,
        metavar="N",
        help="data-parallel over N: torch, N gloo processes on this machine (or those of "
        "torchrun); keras, MirroredStrategy over N devices; --batch-size is the global batch",
    )
    tr.add_argument(
        "--multi-worker",
        action="store_true",
        help="keras: N worker processes on this machine under MultiWorkerMirroredStrategy "
        "(each given a TF_CONFIG) instead of one process over N devices",
    )
    tr.add_argument(
        "--system-allocator",
        action="store_true",
        help="leave the C allocator as it is (else glibc's malloc keeps freed memory for the "
        "next step instead of taking page faults to get it back)",
    )
    tr.add_argument(
        "-o", "--output", required=True, metavar="RUN_DIR", help="checkpoints, logs, metrics.json"
    )
    max_params_arg(tr)
    spec_args(tr)
    sub.add_parser("ops", help="print the op × backend matrix")
    sub.add_parser("lsp", help="run the language server on stdin/stdout (needs dualnet[lsp])")
    fmt = sub.add_parser("fmt", help="rewrite .dnet files in the canonical layout")
    fmt.add_argument("paths", nargs="+", metavar="PATH", help="files, or folders of .dnet files")
    fmt.add_argument(
        "--check", action="store_true", help="change nothing; list the files that would change"
    )
    parity = sub.add_parser(
        "parity",
        help="run a model in several backends from one weight "
        "file on the same random inputs; compare every output",
    )
    source_args(parity, many=True)
    comparison_args(parity, "the inputs and of the initialisation", batch=2)
    modes = parity.add_mutually_exclusive_group()
    modes.add_argument(
        "--per-layer",
        action="store_true",
        help="also compare the output of every layer and name the first that diverges",
    )
    modes.add_argument(
        "--train",
        action="store_true",
        help="training mode (batch statistics, Dropout off): compare the "
        "outputs and the updated running statistics (PyTorch and Keras)",
    )
    training = parity.add_argument_group(
        "training runs", "N optimiser steps in PyTorch and in Keras (its fit() step)"
    )
    training.add_argument(
        "--train-steps",
        type=_count,
        metavar="N",
        help="train N steps in both frameworks on the same random batches (loss: FILE's train "
        "declaration's on random targets, or else the "
        "outputs times a fixed random tensor); compare every step's loss and every "
        "tensor after the last (with --per-layer: name the first tensor that diverges)",
    )
    optimizer_args(training, "the N steps")
    training.add_argument(
        "--f64", action="store_true", help="train in float64 (round-off apart from semantics)"
    )
    training.add_argument(
        "--same-dropout",
        action="store_true",
        help="keep Dropout and StochasticDepth on, with one mask per step and call site "
        "drawn from the seed and fed to both frameworks (default: Dropout off in both)",
    )
    grad = sub.add_parser(
        "gradcheck",
        help="check gradients: finite differences in float64 "
        "against each backend's autodiff, and across backends",
    )
    source_args(grad)
    comparison_args(grad, "the inputs, directions and initialisation", batch=1)
    grad.add_argument(
        "--eps",
        type=float,
        default=1e-8,
        metavar="E",
        help="the finite-difference step, and a tenth of it where that misses (default 1e-8)",
    )
    run = sub.add_parser("run", help="run a model on .npy inputs with one backend")
    source_args(run)
    run.add_argument(
        "--backend",
        required=True,
        choices=tuple(BACKENDS),
        help="onnx: ONNX Runtime (CUDA when available, else CPU)",
    )
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE.npy",
        help="an input of the model's forward (repeat for each)",
    )
    run.add_argument(
        "--weights", metavar="W.safetensors", help="the weights (default: a seeded initialisation)"
    )
    run.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="S",
        help="the seed of the initialisation when no --weights (default 0)",
    )
    run.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.npz",
        help="where to write the outputs (output, or output_0, output_1, ...)",
    )
    max_params_arg(run)
    return parser


def _seed(text: str) -> int:
    try:
        seed = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: expected an int") from None
    if not 0 <= seed < 2**64:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: must be in [0, 2**64)")
    return seed


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: expected a positive int")
    return value


def _backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"invalid backends {text!r}: two or more of {', '.join(BACKENDS)}"
        )
    return names


def _opset(text: str) -> int:
    try:
        opset = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid opset {text!r}: expected an int") from None
    if not 1 <= opset <= 100:
        raise argparse.ArgumentTypeError(f"invalid opset {opset}")
    return opset


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except ImportError as exc:  # an optional dependency the command needs is missing
        from dualnet.extras import missing

        diagnostic = missing(exc)
        if diagnostic is None:
            return _internal_error(exc)
        from dualnet.diagnostics import SourceCache, render

        for d in diagnostic.diagnostics:
            print(render(d, SourceCache(), sys.stderr.isatty()), file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("dualnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dualnet ops | head`: the reader stopped; so do we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (RecursionError, MemoryError) as exc:
        print(
            f"dualnet: error: the input is too large or too deeply nested ({type(exc).__name__})",
            file=sys.stderr,
        )
        return EXIT_INPUT
    except Exception as exc:  # a bug in dualnet: say so plainly, without a traceback
        return _internal_error(exc)


def _internal_error(exc: BaseException) -> int:
    print(
        f"dualnet: internal error: {type(exc).__name__}: {exc}\n"
        "please report this with the input that caused it "
        "(DUALNET_TRACEBACK=1 shows the traceback)",
        file=sys.stderr,
    )
    if os.environ.get("DUALNET_TRACEBACK"):
        raise exc
    return EXIT_INTERNAL


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # train --distributed relaunches it
    if args.command is None:
        _parser().print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "ops":
        return _ops()
    if args.command == "lsp":
        from dualnet.lsp import serve

        return serve()
    if args.command == "fmt":
        from dualnet.fmt.command import run

        return run(args.paths, args.check)
    if args.command == "parity":
        usage = _training_usage(args)
        if usage:
            print(f"dualnet: error: {usage}", file=sys.stderr)
            return EXIT_USAGE
        if len(args.file) > 1:
            return _parity_files(args)
        args.file = args.file[0]
    if args.command == "check" and (args.summary and args.json or args.dims and not args.summary):
        print("dualnet: error: --dims goes with --summary, which has no --json", file=sys.stderr)
        return EXIT_USAGE
    if args.command in ("check", "ir"):  # a short process: no collection passes over the IR
        gc.disable()
    summary = _check(args)
    if args.command == "check" and args.json:
        print(json.dumps(_json(summary), indent=2))
        return EXIT_OK if summary.ok else EXIT_INPUT
    if not summary.ok:
        _print_diagnostics(summary)
        return EXIT_INPUT
    commands = {
        "init": _init,
        "compile": _compile,
        "run": _run,
        "train": _train,
        "parity": _parity,
        "gradcheck": _gradcheck,
        "graph": _graph,
    }
    if args.command == "check" and args.summary:
        commands["check"] = _summary
    if args.command in commands:
        from dualnet.diagnostics import DualnetError

        try:
            return commands[args.command](args, summary)
        except DualnetError as exc:  # bad weights, inputs, output paths: after the check
            summary.diagnostics.extend(exc.diagnostics)
            _print_diagnostics(summary)
            return EXIT_INPUT
    if args.command == "ir":
        from dualnet.ir.printer import print_ir

        sys.stdout.write(print_ir(summary.instance))
    else:
        _print_table(summary)
    return EXIT_OK


def _training_usage(args) -> str:
    """Why parity's training options do not go together, or ""."""
    given = [
        flag
        for flag, value in (
            ("--optimizer", args.optimizer),
            ("--lr", args.lr),
            ("--schedule", args.schedule),
            ("--f64", args.f64),
            ("--same-dropout", args.same_dropout),
        )
        if value not in (None, False)
    ]
    if not args.train_steps:
        return f"{', '.join(given)}: only with --train-steps" if given else ""
    if args.train:
        return "--train-steps trains; --train compares one training-mode forward"
    if len(args.file) > 1:
        return "--train-steps takes one FILE"
    return ""


def _check(args):
    """Check the entry model with the `--hyper` values (kept as `args.hyper_values`); a
    malformed `--hyper` is reported as the check's diagnostic."""
    from dualnet.diagnostics import DualnetError, SourceCache
    from dualnet.frontend import Summary, check_file, parse_hyper

    try:
        args.hyper_values = parse_hyper(args.hyper)
    except DualnetError as exc:
        return Summary(args.model or "", args.file, None, None, exc.diagnostics, SourceCache())
    return check_file(args.file, args.model, tuple(args.include), args.hyper_values)


def _program(args, file: str | None = None):
    """The program of FILE (or `file`) with the command's include directories, parameter
    limit and `--hyper` values."""
    from dualnet.compiler import Program

    return Program(file or args.file, tuple(args.include), args.max_params, args.hyper_values)


def _compile(args, summary) -> int:
    """Emit, validate and atomically write the backend source."""
    from dualnet.compiler import write_onnx, write_source

    graphs = [name for name, b in BACKENDS.items() if b.kind == "graph"]
    layouts = [name for name, b in BACKENDS.items() if len(b.layouts) > 1]
    only = {
        "--layout": (layouts, args.layout),
        "--weights": (graphs, args.weights),
        "--seed": (graphs, args.seed),
        "--opset": (graphs, args.opset),
        "--max-params": (graphs, args.max_params),
        "--loss": ([name for name in BACKENDS if name not in graphs], args.loss),
    }
    for option, (targets, value) in only.items():
        if value is not None and args.target not in targets:
            print(
                f"dualnet: error: {option} applies to --target {' or '.join(targets)} only",
                file=sys.stderr,
            )
            return EXIT_USAGE
    if args.target in graphs:
        out = write_onnx(
            summary, args.output, args.weights, args.seed or 0, args.opset, args.max_params
        )
    else:
        out = write_source(summary, args.target, args.output, args.layout or "channels_first")
    print(f"wrote {out}")
    spec = _train_spec(args, summary, steps=None)
    if spec is not None and args.target not in graphs:
        from dualnet.training.files import write_training

        print(f"wrote {write_training(_program(args), spec, args.target, args.output)}")
    return EXIT_OK


def _train_spec(args, summary, steps: int | None):
    """The TrainSpec of FILE's `train` declaration, or of the training options (`--loss`,
    ...) for a file without one, or None (E-INPUT naming the option: training options
    beside a train declaration, or without `--loss`). `steps`: the run's optimiser steps,
    which cosine and one_cycle span unless told otherwise."""
    from dualnet.diagnostics import error, option
    from dualnet.training.spec import TrainSpec, parse_optimizer

    given = _training_options(
        args,
        ("--loss", args.loss),
        ("--metrics", args.metrics),
        ("--accumulate", args.accumulate if args.accumulate != 1 else None),
    )
    if summary.training is not None:
        _refuse_beside_declaration(summary, given)
        return summary.training
    if args.loss is None:
        if given:
            raise error("E-INPUT", f"{', '.join(given)} needs --loss MODEL", option("--loss"))
        return None
    optimizer = parse_optimizer(args.optimizer or "SGD", args.lr, args.schedule, steps or 0)
    return TrainSpec(
        summary.model, args.loss, optimizer, metrics=args.metrics, accumulate=args.accumulate
    )


def _training_options(args, *more: tuple[str, object]) -> list[str]:
    """The optimiser options given, after those of `more` ((flag, value or None) pairs)."""
    optimizer = [("--optimizer", args.optimizer), ("--lr", args.lr), ("--schedule", args.schedule)]
    return [flag for flag, value in [*more, *optimizer] if value is not None]


def _refuse_beside_declaration(summary, given: list[str]) -> None:
    """E-INPUT naming the training options `given` beside FILE's train declaration."""
    from dualnet.diagnostics import error, option

    if given:
        raise error(
            "E-INPUT",
            f"{', '.join(given)}: {summary.model} has a train declaration, which says "
            "how it trains",
            option(given[0]),
            notes=("the training options are for files without a train declaration",),
        )


def _train(args, summary) -> int:
    """Train with the generated training code; exit 130 after a checkpoint on Ctrl-C."""
    from dualnet.diagnostics import error, option
    from dualnet.training.allocator import keep_freed_memory
    from dualnet.training.data import read_data
    from dualnet.training.distributed import (
        follower,
        launch,
        launched,
    )
    from dualnet.training.loop import Interrupted, Options, train

    data = read_data(args.data)
    val = read_data(args.val, "--val") if args.val else None
    examples = len(next(iter(data.values()))) if data else 0
    steps = args.epochs * -(-examples // args.batch_size) // args.accumulate
    spec = _train_spec(args, summary, steps)
    if spec is None:
        raise error(
            "E-INPUT", "train needs --loss MODEL (FILE has no train declaration)", option("--loss")
        )
    options = Options(
        args.epochs,
        args.batch_size,
        args.seed,
        args.weights,
        args.resume,
        args.plot,
        not args.no_progress,
        args.distributed,
        args.multi_worker,
    )
    if args.multi_worker and (args.backend != "keras" or args.distributed < 2):
        raise error(
            "E-INPUT",
            "--multi-worker runs Keras workers: it needs --backend keras and --distributed N "
            "with N ≥ 2",
            option("--multi-worker"),
        )
    if args.distributed > 1:
        _check_shares(args.distributed, args.batch_size, examples)
        processes = args.backend == "torch" or args.multi_worker
        if processes and not launched(args.multi_worker):
            return launch(args.argv, args.distributed, workers=args.multi_worker)
    if not args.system_allocator:
        keep_freed_memory()  # steps then reuse memory instead of taking page faults
    try:
        result = train(_program(args), spec, args.backend, args.output, data, val, options)
    except Interrupted as exc:
        if args.distributed > 1 and follower():
            return 130
        print(
            f"dualnet: interrupted; the last checkpoint is {exc.where} (--resume continues)",
            file=sys.stderr,
        )
        return 130
    if args.distributed > 1 and follower():
        return EXIT_OK  # rank 0 reports the run
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(f"trained {summary.model} on {result['where']}; wrote {args.output}/metrics.json")
    return EXIT_OK


def _check_shares(processes: int, batch_size: int, examples: int) -> None:
    """E-INPUT when a global batch (the last one included) has fewer examples than
    `--distributed` shares it."""
    from dualnet.diagnostics import error, option

    smallest = min(batch_size, examples % batch_size or batch_size)
    if smallest < processes:
        raise error(
            "E-INPUT",
            f"a batch of {smallest} examples cannot be shared by {processes} replicas",
            option("--batch-size"),
            notes=[
                f"{examples} examples in batches of {batch_size}; each replica needs at "
                "least one example of every batch"
            ],
        )


def _run(args, summary) -> int:
    """Run the model on the inputs with one backend and write the outputs."""
    from dualnet.io.files import check_output
    from dualnet.verify.runner import read_inputs, run, write_outputs

    protect = (
        *summary.files,
        *([args.weights] if args.weights else []),
        *(item.partition("=")[2] for item in args.input),
    )
    check_output(args.output, protect)  # before the run, not after it
    inputs = read_inputs(args.input)
    outputs, where = run(
        _program(args),
        args.model,
        args.backend,
        inputs,
        args.weights,
        args.seed,
    )
    write_outputs(outputs, args.output, protect, summary.graph.output_labels())
    print(f"ran {summary.model} on {where}; wrote {len(outputs)} output(s) to {args.output}")
    return EXIT_OK


def _ops() -> int:
    from dualnet.verify.ops_matrix import matrix
    from dualnet.verify.table import render_table

    rows = matrix()
    print(
        render_table(f"{len(rows)} ops × {len(BACKENDS)} backends", ["op", "kind", *BACKENDS], rows)
    )
    return EXIT_OK


def _parity(args, summary) -> int:
    """The differences table (and the per-layer one); exit 1 when a pair exceeds the
    tolerance."""
    from dualnet.verify.parity import compare, compare_layers, layer_table, output_table, parse_dims

    program = _program(args)
    dims = parse_dims(args.dims)
    if args.train_steps:
        return _train_parity(args, summary, program, dims)
    backends, layers = _parity_backends(args), []
    if args.per_layer:
        rows, layers, where = compare_layers(
            program, args.model, backends, args.weights, args.seed, dims
        )
    else:
        rows, where = compare(
            program, args.model, backends, args.weights, args.seed, dims, train=args.train
        )
    print("\n".join(where))
    print(output_table(summary.model, rows))
    if args.per_layer:
        print(layer_table(layers, backends))
    return EXIT_OK if all(r.ok for r in rows + layers) else EXIT_INPUT


def _train_parity(args, summary, program, dims) -> int:
    """`parity --train-steps N` with FILE's train declaration, or the optimiser options:
    the loss and optimiser used, the loss table, the tensor table (and the first
    divergence); exit 1 when a tensor exceeds the tolerance."""
    from dualnet.training.spec import parse_optimizer
    from dualnet.training.torch_code import describe
    from dualnet.verify.train_parity import (
        divergence_line,
        loss_table,
        train_parity,
        weight_table,
    )

    for name in args.backends:
        if name not in ("torch", "keras"):
            print(f"{name}: left out (training runs compare PyTorch and Keras)")
    spec = summary.training
    if spec is not None:
        _refuse_beside_declaration(summary, _training_options(args))
    else:
        spec = parse_optimizer(args.optimizer or "SGD", args.lr, args.schedule, args.train_steps)
    result = train_parity(
        program,
        args.model,
        spec,
        args.train_steps,
        args.weights,
        args.seed,
        dims,
        args.f64,
        args.per_layer,
        args.same_dropout,
    )
    print(f"torch: {result.torch.where}\nkeras: {result.keras.where}")
    accumulate = f", one step per {result.accumulate} batches" if result.accumulate > 1 else ""
    print(f"loss: {result.loss}\noptimizer: {describe(result.spec)}{accumulate}")
    print("\n".join(result.notes))
    print(loss_table(result))
    print(weight_table(result))
    if args.per_layer:
        print(divergence_line(result))
    return EXIT_OK if result.ok else EXIT_INPUT


def _parity_backends(args) -> list[str]:
    if not args.train:
        return args.backends
    for name in args.backends:
        if BACKENDS[name].no_training:
            print(f"{name}: left out ({BACKENDS[name].no_training})")
    return [name for name in args.backends if not BACKENDS[name].no_training]


def _parity_files(args) -> int:
    """`dualnet parity A.dnet B.dnet ...`: each file's entry model, one line each (the worst
    relative difference per backend pair); exit 1 when a file fails to check or a pair
    exceeds the tolerance."""
    from dualnet.diagnostics import DualnetError
    from dualnet.frontend import check_file
    from dualnet.verify.parity import TOLERANCE, compare, parse_dims
    from dualnet.verify.table import render_table

    if args.model or args.per_layer or args.hyper:
        print("dualnet: error: --model, --per-layer and --hyper take one FILE", file=sys.stderr)
        return EXIT_USAGE
    args.hyper_values = {}
    backends = _parity_backends(args)
    pairs = [" vs ".join(p) for p in itertools.combinations(backends, 2)]
    table, ok = [], True
    for file in args.file:
        summary = check_file(file, None, tuple(args.include))
        try:
            if not summary.ok:
                raise DualnetError(summary.diagnostics)
            rows, _ = compare(
                _program(args, file),
                None,
                backends,
                args.weights,
                args.seed,
                parse_dims(args.dims),
                train=args.train,
            )
        except DualnetError as exc:
            summary.diagnostics[:] = exc.diagnostics
            _print_diagnostics(summary)
            table.append([file, summary.model or "?", "—", *("—" for _ in pairs), "ERROR"])
            ok = False
            continue
        good = all(r.ok for r in rows)
        ok = ok and good
        table.append(
            [
                file,
                summary.model,
                str(len(summary.graph.outputs)),
                *(_worst([r for r in rows if " vs ".join(r.pair) == p]) for p in pairs),
                "ok" if good else "MISMATCH",
            ]
        )
    print(
        render_table(
            f"parity of {len(args.file)} models: worst max |a-b| / (1 + max |b|) "
            f"per backend pair, tolerance {TOLERANCE:g}",
            ["file", "model", "outputs", *pairs, "verdict"],
            table,
            right=set(range(2, 3 + len(pairs))),
        )
    )
    return EXIT_OK if ok else EXIT_INPUT


def _worst(rows) -> str:
    """One backend pair's cell of the several-files table: the worst relative difference,
    or the first difference of shapes."""
    differ = next((r.shapes_differ for r in rows if r.shapes_differ), "")
    return differ or f"{max(r.max_rel for r in rows):.3g}"


def _gradcheck(args, summary) -> int:
    """The finite-difference and cross-backend tables; exit 1 when a tensor fails."""
    from dualnet.verify.gradcheck import agreement_table, check_table, gradcheck
    from dualnet.verify.parity import parse_dims

    checks, agreements, where = gradcheck(
        _program(args),
        args.model,
        args.backends,
        args.weights,
        args.seed,
        parse_dims(args.dims),
        args.eps,
    )
    print("\n".join(where))
    print(check_table(summary.model, checks, args.eps))
    print(agreement_table(summary.model, agreements))
    return EXIT_OK if all(r.ok for r in checks + agreements) else EXIT_INPUT


def _json(summary) -> dict:
    from dualnet.training.summary import to_json

    return {
        "ok": summary.ok,
        "file": summary.file,
        "model": summary.model,
        "inputs": summary.input_types,
        "outputs": summary.output_types,
        "layers": [
            {"path": r.path, "op": r.op, "output": r.output, "params": r.params}
            for r in summary.layers
        ]
        if summary.ok
        else [],
        "trainable_params": summary.trainable_params if summary.ok else None,
        "buffers": summary.buffers if summary.ok else None,
        "training": to_json(summary.training, summary.instance) if summary.training else None,
        "diagnostics": [d.to_json() for d in summary.diagnostics],
    }


def _graph(args, summary) -> int:
    from dualnet.graph.write import write_graph
    from dualnet.ir.sizes import parse_dims

    write_graph(summary, args.output, args.depth, parse_dims(args.dims))
    print(f"wrote {args.output}")
    return EXIT_OK


def _summary(args, summary) -> int:
    from dualnet.graph.summary import HEADER, NUMBERS, summarize, table
    from dualnet.ir.sizes import parse_dims, require_positive_sizes
    from dualnet.verify.table import render_table

    dims = parse_dims(args.dims)
    require_positive_sizes(summary.graph, dims, "--dims")
    rows, totals = summarize(summary.instance, summary.graph, dims)
    title = f"{summary.model}({', '.join(summary.input_types)})"
    print(render_table(title, HEADER, table(rows, totals), right=NUMBERS))
    return EXIT_OK


def _init(args, summary) -> int:
    """Draw the initial state with the seed and write it atomically to `args.output`."""
    from dualnet.io.files import check_output
    from dualnet.memory import require_allocatable

    require_allocatable(summary.instance, args.max_params)
    check_output(args.output, summary.files)  # before the weights are drawn
    from dualnet.backends.torch.init import init_state
    from dualnet.backends.torch.weights import write_tensors

    state = init_state(summary.instance, args.seed)
    write_tensors(state, args.output, summary.files)
    params, buffers = summary.trainable_params, summary.buffers
    numel = sum(t.numel() for t in state.values())
    frozen = numel - params - buffers  # non-trainable parameters, if any
    print(
        f"wrote {len(state)} tensors to {args.output}: {params:,} trainable parameters"
        + (f", {frozen:,} frozen" if frozen else "")
        + f", {buffers:,} buffer elements (seed {args.seed})"
    )
    return EXIT_OK


def _print_diagnostics(summary) -> None:
    from dualnet.diagnostics import render

    color = sys.stderr.isatty()
    for d in summary.diagnostics:
        print(render(d, summary.sources, color) + "\n", file=sys.stderr)
    n = len(summary.diagnostics)
    print(f"{n} error{'s' * (n != 1)} in {summary.file}", file=sys.stderr)


def _print_table(summary) -> None:
    from dualnet.verify.table import render_table

    title = (
        f"{summary.model}({', '.join(summary.input_types)}) -> {', '.join(summary.output_types)}"
    )
    rows = [[r.path, r.op, r.output, f"{r.params:,}"] for r in summary.layers]
    print(
        render_table(
            title, ["layer", "op", "output", "params"], rows, right={3}, bold=sys.stdout.isatty()
        )
    )
    print(f"trainable parameters: {summary.trainable_params:,}")
    print(f"buffers: {summary.buffers:,} elements")
    if summary.training:
        from dualnet.training.summary import describe

        print("\n".join(describe(summary.training, summary.instance)))


if __name__ == "__main__":
    sys.exit(main())
