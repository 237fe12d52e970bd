"""ONNX's side of `dualnet gradcheck` (`backends.gradients`): ONNX has no autodiff, and ONNX
Runtime no float64 Conv, ConvTranspose, LSTM or GRU kernels, so the model's float64 graph
(`float64.py`), run by ONNX's reference runtime, is differenced along the reference's
(PyTorch's) directions against its gradient."""

from __future__ import annotations

import numpy as np

from dualnet.backends.gradients import INPUT, float64
from dualnet.io.weights import state_specs


class OnnxSide:
    """The model's float64 ONNX graph on ONNX's reference runtime; its tensors are the float
    inputs and the trainable parameters of `state` (float64 arrays). A
    parameter the graph holds as an initializer under its own name is fed (the initializer
    made a graph input); one it re-lays out (LSTM/GRU gates, packed attention projections)
    is re-emitted."""

    def __init__(
        self,
        program,
        model: str | None,
        state: dict[str, np.ndarray],
        inputs: dict[str, np.ndarray],
    ):
        import onnx
        from onnx import helper

        from dualnet.backends.onnx.float64 import evaluator, float64_model, widened

        self.evaluator, self.emit = evaluator, float64_model
        self.summary, self.state = widened(program.check(model)), state
        proto = float64_model(self.summary, state)
        graph = proto.graph
        trainable = [n for n, spec in state_specs(self.summary.instance) if spec.trainable]
        tensors = {n + INPUT: x for n, x in float64(inputs).items() if x.dtype.kind == "f"}
        tensors.update({n: state[n] for n in trainable})
        self.fed = {t.name for t in graph.initializer} & set(tensors)
        graph.input.extend(
            helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
            for t in graph.initializer
            if t.name in self.fed
        )
        self.session = evaluator(proto)
        self.inputs, self.tensors = float64(inputs), tensors
        self.where = f"ONNX reference runtime (onnx {onnx.__version__}), float64"

    def outputs(self, name: str | None = None, value: np.ndarray | None = None) -> list:
        feed, session = dict(self.inputs), self.session
        if name in self.fed:
            feed[name] = value
        elif name is not None and name.endswith(INPUT):
            feed[name.removesuffix(INPUT)] = value
        elif name is not None:
            session = self.evaluator(self.emit(self.summary, self.state | {name: value}))
        return session.run(None, feed)

    def gradients(self) -> None:
        return None  # no autodiff: differenced against the reference's gradient

    def torch_named(self, gradients: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return gradients
