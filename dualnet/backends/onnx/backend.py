"""The ONNX backend object (registered in `dualnet.backends`): a graph file, run on ONNX
Runtime (CUDA when available, else the CPU)."""

from __future__ import annotations

from dualnet.backends.backend import Backend
from dualnet.backends.rows import lowering_row


class OnnxBackend(Backend):
    name = "onnx"
    title = "ONNX"
    kind = "graph"
    package = "dualnet.backends.onnx"
    runtime = "onnxruntime"
    no_training = "ONNX Runtime runs inference graphs only: no training mode"

    def support(self, op: str) -> str:
        if not self.supports(op):
            return super().support(op)
        return f"yes (opset ≥ {lowering_row(op, self.name).min_opset})"

    def gradient_side(self, program, model, file, state, inputs, loss):
        return self.module("gradients").OnnxSide(program, model, state, inputs)

    def run(self, program, model, summary, inputs, weights, probe):
        import onnxruntime as ort

        emitted = self.module("model").onnx_emitted(summary, weights, max_params=program.max_params)
        self.module("validate").validate(emitted.model, summary.instance.span)
        graph, extra = emitted.model, []
        if probe.layers is not None:
            graph, extra = self.module("probe").with_outputs(
                graph, [n for _, names in emitted.calls for n in names]
            )
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        )
        session = ort.InferenceSession(graph.SerializeToString(), providers=providers)
        feed = {v.name: x for v, x in zip(summary.graph.inputs, inputs, strict=True)}
        used = session.get_providers()[0]
        results = session.run(None, feed)
        count = len(results) - len(extra)
        outputs, probed = results[:count], iter(results[count:])
        for path, names in emitted.calls if extra else ():
            probe.layers.setdefault(path, []).append([next(probed) for _ in names])
        return outputs, f"ONNX Runtime {ort.__version__} ({used})"


ONNX = OnnxBackend()
