"""The Keras 3 backend object (registered in `dualnet.backends`)."""

from __future__ import annotations

import sys

from dualnet.backends.backend import SourceBackend


class KerasBackend(SourceBackend):
    name = "keras"
    title = "Keras"
    package = "dualnet.backends.keras"
    runtime = "keras"
    layouts = ("channels_first", "channels_last")
    imports = frozenset({"__future__", "math", "keras"})
    registrations = frozenset({"_register", "keras.saving.register_keras_serializable"})

    def emit(self, instance, file: str, layout: str) -> tuple[str, str]:
        return self.module("emit").emit_keras(instance, file, layout)

    def owns(self, obj: object) -> bool:
        keras = sys.modules.get("keras")  # not imported: obj cannot be a Keras layer
        return keras is not None and isinstance(obj, keras.layers.Layer)

    def weights_io(self):
        state = self.module("state")
        return state.save_keras, state.load_keras

    def shapes(self, built, summary) -> dict[str, tuple[int, ...]]:
        from dualnet.io.weights import state_specs

        return self.module("state").held_shapes(
            built, {n: tuple(s.shape) for n, s in state_specs(summary.instance)}
        )

    def gradient_side(self, program, model, file, state, inputs, loss):
        return self.module("gradients").KerasSide(program, model, file, inputs, loss)

    def run(self, program, model, summary, inputs, weights, probe):
        import keras

        probes, state = self.module("probe"), self.module("state")
        built = program.keras(model)
        self.weights_io()[1](built, weights)
        if probe.train:
            self.module("masks").dropout_off(built)
        if probe.train:  # the way fit() calls the model
            out = probes.train_step(built, inputs)
        else:
            layouts = None
            if probe.layers is not None:
                layouts = self.module("emit").output_layouts(summary.instance, summary.file)
            with probes.recording(built, probe.layers, layouts):
                out = built(*inputs, training=False)
        if probe.state is not None:
            probe.state.update(state.torch_named(built, lambda variable: variable.numpy()))
        if isinstance(out, dict):  # named outputs, in the signature's order
            out = [out[name] for name in summary.graph.output_names]
        out = out if isinstance(out, tuple | list) else (out,)
        return [
            keras.ops.convert_to_numpy(o) for o in out
        ], f"Keras {keras.__version__} ({keras.backend.backend()})"


KERAS = KerasBackend()
