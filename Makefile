# dualnet — developer entry points. Every target works on a fresh clone:
#   make demo        check every model in models/, compile each to PyTorch, Keras and ONNX,
#                    then print the zoo's parity table (the three backends, one weight file)
#   make test        the whole test suite, then ruff
#   make train-demo  train examples/digits.dnet on the shipped handwritten digits in PyTorch and
#                    in Keras: both accuracies, the loss curves' difference, curves.png
#   make test-slow   the full-size zoo models against their references (torchvision, transformers)
#   make bench       check speed, generated-model latency (PyTorch, Keras), ONNX emission/latency,
#                    ONNX start-up (installs the bench extra: onnxscript, for the dynamo exporter),
#                    the zoo against torchvision / transformers: generated PyTorch forward,
#                    ORT on dualnet's ONNX vs the exported reference, GPT-2 ONNX emission,
#                    generated Keras vs keras.applications / hand-written Keras (docs/benchmarks.md),
#                    training steps (ResNet-18, BERT-tiny) vs hand-written PyTorch / Keras, and
#                    `dualnet train`'s loop vs a bare loop (docs/training.md), and the language
#                    server's latency (docs/editor.md)
#   make fuzz        differential fuzzing: random valid programs, parity of the three backends
#   make fuzz-frontend  mutation fuzzing of `dualnet check` on the zoo: exit codes, time, memory
#   make wheel-smoke build the wheel, install it in a clean venv, run it outside the repo
#   make docs        build the documentation site (mkdocs --strict) into site/
#
# Every pip install goes through constraints.txt (it keeps torch on the CPU build).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := $(CURDIR)/constraints.txt
# Written after a successful install; redone when the dependency spec changes.
STAMP := $(VENV)/.dualnet-installed
BENCH_STAMP := $(VENV)/.dualnet-bench-installed

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup demo train-demo test test-slow lint bench fuzz fuzz-frontend wheel-smoke docs clean

help:
	@echo "make setup        create $(VENV) and install dualnet[dev,reference,train] (editable)"
	@echo "make demo         dualnet check + compile (torch, keras, onnx) on every models/*.dnet, then the parity table"
	@echo "make test         pytest + ruff"
	@echo "make train-demo   train examples/digits.dnet in PyTorch and in Keras, compare (runs/train-demo)"
	@echo "make test-slow    the full-size zoo models against their references (slow-marked tests)"
	@echo "make bench        check-speed, PyTorch / Keras latency, ONNX benchmarks (+ onnxscript), the zoo vs its references"
	@echo "make fuzz         2,000 random programs through all three backends (EXAMPLES=N SEED=S)"
	@echo "make fuzz-frontend  20 minutes (MINUTES=M), >= 10,000 mutants of the zoo through check"
	@echo "make wheel-smoke  build + install the wheel in a clean venv, run it outside the repo"
	@echo "make docs         build the documentation site into site/ (warnings are errors)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@if [ ! -x "$(PY)" ]; then
	    echo ">> creating $(VENV) with $(PYTHON)"
	    $(PYTHON) -m venv "$(VENV)"
	fi
	echo ">> pip install -c constraints.txt -e '.[dev,reference,train]'"
	$(PIP) install -c "$(CONSTRAINTS)" -e '.[dev,reference,train]'
	touch "$(STAMP)"

demo: setup
	@shopt -s nullglob
	models=(models/*.dnet)
	if [ $${#models[@]} -eq 0 ]; then echo "no models in models/" >&2; exit 1; fi
	entries=()
	for f in "$${models[@]}"; do
	    # A library file (imported by another model here, e.g. blocks.dnet) has no entry
	    # model of its own: it is checked through the files that import it.
	    name=$$(basename "$$f")
	    importers=$$(grep -lE "^[[:space:]]*(import|from)[[:space:]]+\"$$name\"" "$${models[@]}" \
	                 | grep -vxF "$$f" | paste -sd' ' - || true)
	    if [ -n "$$importers" ]; then
	        echo "== $$f: library, checked through $$importers"
	        echo
	        continue
	    fi
	    echo "== dualnet check $$f"
	    $(VENV)/bin/dualnet check "$$f"
	    for target in torch keras onnx; do
	        $(VENV)/bin/dualnet compile "$$f" --target $$target -o build/demo
	    done
	    entries+=("$$f")
	    echo
	done
	echo "== dualnet parity: PyTorch, Keras and ONNX Runtime from one seeded weight file"
	# (TensorFlow's start-up log lines, which no setting silences, are filtered out)
	# (images of symbolic size at 32 x 32: DenseNet's poolings floor parity's default 8 away)
	$(VENV)/bin/dualnet parity --dims H=32,W=32 "$${entries[@]}" \
	    2> >(grep -vE '^(I0000|WARNING: All log messages|To enable the following)' >&2)
	echo "demo: checked $${#entries[@]} model file(s), compiled each to PyTorch, Keras and ONNX" \
	     "(build/demo/), parity ok"

test: setup
	@$(PY) -m pytest -q -p no:cacheprovider
	$(MAKE) --no-print-directory lint

test-slow: setup
	@$(PY) -m pytest -q -p no:cacheprovider -m slow tests/reference

lint: setup
	@$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The benchmarks' own dependency (the bench extra: onnxscript, which torch.onnx's dynamo
# exporter needs), so that onnx_bench.py's headline ratio is measured on every clone.
$(BENCH_STAMP): $(STAMP)
	@echo ">> pip install -c constraints.txt -e '.[all,bench]'"
	$(PIP) install -c "$(CONSTRAINTS)" -e '.[all,bench]'
	touch "$(BENCH_STAMP)"

bench: $(BENCH_STAMP)
	@$(PY) benchmarks/run.py
	$(PY) benchmarks/torch_latency.py
	$(PY) benchmarks/keras_latency.py
	$(PY) benchmarks/onnx_bench.py
	$(PY) benchmarks/onnx_startup.py
	$(PY) benchmarks/zoo_bench.py
	$(PY) benchmarks/train_bench.py
	$(PY) benchmarks/lsp_bench.py

train-demo: setup
	@$(PY) examples/train_demo.py -o runs/train-demo

EXAMPLES ?= 2000
SEED ?= 1
fuzz: setup
	@$(PY) benchmarks/fuzz.py --examples $(EXAMPLES) --seed $(SEED)

MINUTES ?= 20
MUTANTS ?= 10000
fuzz-frontend: setup
	@$(PY) benchmarks/fuzz_frontend.py --minutes $(MINUTES) --min-mutants $(MUTANTS) --seed $(SEED)

wheel-smoke: setup
	@tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/dualnet-wheel-smoke.XXXXXX")
	trap 'rm -rf "$$tmp"' EXIT
	echo ">> building wheel into $$tmp/dist"
	$(PY) -m build --wheel --outdir "$$tmp/dist" .
	wheel=$$(ls "$$tmp"/dist/dualnet-*.whl)
	echo ">> clean venv + $$(basename "$$wheel")"
	$(PYTHON) -m venv "$$tmp/venv"
	"$$tmp/venv/bin/python" -m pip install -q -c "$(CONSTRAINTS)" "$$wheel"
	mkdir "$$tmp/run"
	cp models/lenet5.dnet "$$tmp/run/"
	cd "$$tmp/run"
	echo ">> (cwd $$PWD) dualnet check lenet5.dnet"
	"$$tmp/venv/bin/dualnet" check lenet5.dnet
	echo ">> dualnet fmt --check, graph -o .dot (no extra); graph -o .svg without the extra: E-EXTRA"
	"$$tmp/venv/bin/dualnet" fmt - < lenet5.dnet > formatted.dnet
	"$$tmp/venv/bin/dualnet" fmt --check formatted.dnet
	"$$tmp/venv/bin/dualnet" graph lenet5.dnet -o lenet5.dot
	if "$$tmp/venv/bin/dualnet" graph lenet5.dnet -o lenet5.svg 2> extra.txt; then exit 1; fi
	grep -q "E-EXTRA" extra.txt
	echo ">> the graph and lsp extras: graph -o .svg/.png, check --summary, lsp over stdio"
	"$$tmp/venv/bin/python" -m pip install -q -c "$(CONSTRAINTS)" "$$wheel[graph,lsp]"
	"$$tmp/venv/bin/dualnet" graph lenet5.dnet -o lenet5.svg
	"$$tmp/venv/bin/dualnet" graph lenet5.dnet -o lenet5.png
	"$$tmp/venv/bin/dualnet" check lenet5.dnet --summary --dims B=1 > /dev/null
	lsp() { printf 'Content-Length: %d\r\n\r\n%s' "$${#1}" "$$1"; }
	{ lsp '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}}'
	  lsp '{"jsonrpc":"2.0","id":2,"method":"shutdown"}'
	  lsp '{"jsonrpc":"2.0","method":"exit"}'; } \
	    | timeout 60 "$$tmp/venv/bin/dualnet" lsp | grep -q '"hoverProvider"'
	echo ">> dualnet --version"
	"$$tmp/venv/bin/dualnet" --version
	echo "wheel-smoke: ok"

docs: setup
	@$(VENV)/bin/mkdocs build --strict

clean:
	@rm -rf build dist site .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
