"""Bugs of the frameworks that dualnet's generated code works around, each shown on the
framework alone. A test here fails once its bug is fixed upstream: then the workaround it
names can go (and this test with it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# ---------------------------------------------------------------- ONNX Runtime


def _pad_then(pool: str, width: int, **attrs) -> bytes:
    """A model: x [1, 1, 3, 3] zero-padded by `width` on H and W, then `pool` with `attrs`."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [
        numpy_helper.from_array(np.array([0, 0, width, width] * 2, np.int64), "pads"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Pad", ["x", "pads", "zero"], ["padded"]),
        helper.make_node(pool, ["padded"], ["y"], **attrs),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=10,
    )
    return model.SerializeToString()


def _session(model: bytes, optimized: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


X = -np.arange(1.0, 10.0, dtype=np.float32).reshape(1, 1, 3, 3)  # all negative


def test_onnx_runtime_fuses_a_zero_pad_into_a_max_pool_as_minus_infinity():
    """ONNX Runtime's Pad fusion adds a zero Pad's pads to the next MaxPool's, which pads
    with -inf: windows over the padding give the largest input, not 0. Workaround:
    `_after_zero_pad` in backends/onnx/lowering.py."""
    model = _pad_then("MaxPool", 1, kernel_shape=[2, 2], pads=[0, 0, 0, 0])
    plain = _session(model, optimized=False).run(None, {"x": X})[0]
    fused = _session(model, optimized=True).run(None, {"x": X})[0]
    assert plain[0, 0, 0, 0] == 0.0  # the window holds padding zeros and X[0, 0]
    assert fused[0, 0, 0, 0] == X[0, 0, 0, 0]


def test_onnx_runtime_fuses_a_zero_pad_into_an_average_pool_it_then_refuses():
    """The fusion gives an AveragePool pads not smaller than its kernel, which ONNX Runtime
    refuses to load; the graph itself is valid. Workaround: `_after_zero_pad` in
    backends/onnx/lowering.py."""
    model = _pad_then("AveragePool", 2, kernel_shape=[1, 1], pads=[0, 0, 0, 0])
    assert _session(model, optimized=False).run(None, {"x": X})[0].shape == (1, 1, 7, 7)
    with pytest.raises(Exception, match="Pad should be smaller than kernel"):
        _session(model, optimized=True)


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_onnx_runtime_fuses_a_relu_into_a_clip_of_a_type_it_then_refuses(dtype):
    """ONNX Runtime fuses Relu into a following Clip, reading the Clip's `min`: for a `min`
    that is no float32/float16/bfloat16 tensor it fails to load the model; the graph itself
    is valid. Workaround: `_relu_before` in backends/onnx/lowering.py."""
    tp = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    x = helper.make_tensor_value_info("x", tp, [3])
    y = helper.make_tensor_value_info("y", tp, None)
    inits = [numpy_helper.from_array(np.array(1, dtype), "lo")]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Clip", ["r", "lo"], ["y"])]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=10,
    )
    model = model.SerializeToString()
    plain = _session(model, optimized=False).run(None, {"x": np.array([-3, 2, 9], dtype)})[0]
    assert plain.tolist() == [1, 2, 9]
    with pytest.raises(Exception, match="Unexpected data type for Clip 'min'"):
        _session(model, optimized=True)


# ---------------------------------------------------------------- PyTorch


def test_torch_avg_pool3d_refuses_an_input_smaller_than_its_kernel():
    """F.avg_pool3d refuses an input smaller than its kernel even where its padding makes the
    window fit; F.max_pool3d and F.avg_pool2d accept it. Workaround: `_smaller_than_kernel`
    in backends/torch/lowering.py (the pads written out with F.pad first)."""
    import torch
    import torch.nn.functional as F

    x = torch.ones(1, 1, 4, 1, 1)
    assert F.max_pool3d(x, (2, 3, 3), 2, padding=(0, 1, 1)).shape == (1, 1, 2, 1, 1)
    assert F.avg_pool2d(x[:, :, 0], 3, 2, padding=1).shape == (1, 1, 1, 1)
    padded = F.avg_pool3d(F.pad(x, (1, 1, 1, 1)), (2, 3, 3), 2)
    assert padded.flatten().tolist() == pytest.approx([2 / 18, 2 / 18])
    with pytest.raises(RuntimeError, match="smaller than kernel size"):
        F.avg_pool3d(x, (2, 3, 3), 2, padding=(0, 1, 1))


@pytest.mark.parametrize("training", [True, False])
def test_torch_batch_norm_backward_misreads_a_gradient_laid_out_otherwise(training):
    """PyTorch's CPU BatchNorm backward computes wrong gradients (input, weight and bias)
    when the incoming gradient is channels-last with a size-1 axis while the input is
    contiguous: the layout in which scaled_dot_product_attention returns the gradient of
    [B, C, L, 1]. Workaround: `_gradient_in_output_layout` in
    backends/runtime/torch_helpers.py (the gradient copied into the output's layout)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 1, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    grad = torch.randn(2, 3, 4, 1, dtype=torch.float64)
    channels_last = torch.empty_strided(grad.shape, (12, 1, 3, 1), dtype=grad.dtype)
    channels_last.copy_(grad)
    assert channels_last.is_contiguous(memory_format=torch.channels_last)

    def gradients(g):
        y = F.batch_norm(x, mean, var, weight, bias, training)
        return torch.autograd.grad(y, (x, weight, bias), g)

    right, wrong = gradients(grad), gradients(channels_last)
    assert all(torch.equal(a, b) for a, b in zip(right, gradients(grad.clone()), strict=True))
    assert all((a - b).abs().max() > 0.1 for a, b in zip(right, wrong, strict=True))


# ---------------------------------------------------------------- TensorFlow


def test_tensorflow_onednn_conv_of_one_channel_with_output_width_one():
    """TensorFlow's oneDNN Conv2D of one input channel with a stride > 1 on the last axis and
    an output width of 1 (batch and height 2) returns wrong numbers; without oneDNN
    (TF_ENABLE_ONEDNN_OPTS=0) they are right. Workaround: `onednn_conv_bug` in
    backends/keras/lowering.py."""
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 2, 1)).astype(np.float32)  # [B, H, W, C]
    w = rng.standard_normal((1, 2, 1, 3)).astype(np.float32)  # [kh, kw, in, out]
    y = tf.nn.conv2d(x, w, strides=[1, 1, 3, 1], padding="VALID").numpy()
    expected = np.einsum("bhwc,wco->bho", x.astype(np.float64), w[0].astype(np.float64))
    wrong = not np.allclose(y[:, :, 0, :], expected, atol=1e-5)
    assert wrong == _pywrap_util_port.IsMklEnabled()  # oneDNN on: the default on x86 Linux


_EIGEN_KERNELS = """
import json
import numpy as np
import tensorflow as tf

out = {}
x = np.random.default_rng(0).standard_normal((1, 3, 1, 1, 1)).astype(np.float32)
w = np.ones((1, 1, 1, 1, 1), np.float32)
out["x"] = x.ravel().tolist()
out["valid"] = tf.nn.conv3d(x, w, [1, 3, 1, 1, 1], "VALID").numpy().ravel().tolist()
out["same"] = tf.nn.conv3d(x, w, [1, 3, 1, 1, 1], "SAME").numpy().ravel().tolist()
out["plane"] = tf.nn.conv2d(x[:, :, 0], w[0], [1, 3, 1, 1], "SAME").numpy().ravel().tolist()
for name, run in (
    ("depthwise", lambda: tf.nn.depthwise_conv2d(
        np.ones((1, 4, 4, 2), np.float32), np.ones((1, 1, 2, 1), np.float32), [1, 2, 1, 1], "VALID"
    )),
    ("transposed", lambda: tf.nn.conv2d_transpose(
        np.ones((1, 3, 3, 1), np.float32), np.ones((2, 2, 1, 1), np.float32), [1, 5, 5, 1], 1,
        "VALID", dilations=2,
    )),
):
    try:
        run()
        out[name] = "ran"
    except tf.errors.InvalidArgumentError as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def eigen_kernels() -> dict:
    """What TensorFlow's own CPU kernels do in the cases below, run with oneDNN off: on some
    CPUs (AVX-512 with BF16 and VNNI, say) oneDNN takes these operations and gets them right,
    on others TensorFlow's kernels run them, so the generated code keeps its workarounds."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [sys.executable, "-c", _EIGEN_KERNELS], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_tensorflow_conv3d_same_with_a_window_below_its_stride_starts_late(eigen_kernels):
    """TensorFlow's 3-D convolution with padding="same" where an axis's pad total is negative
    (depth 3, kernel 1, stride 3: nothing to pad) starts that axis at the second element; the
    same convolution with padding="VALID" (equal here) and the 2-D one are right. Workaround:
    `same_misread` in backends/keras/weights.py."""
    x = eigen_kernels["x"]
    assert eigen_kernels["valid"] == [x[0]] and eigen_kernels["plane"] == [x[0]]
    assert eigen_kernels["same"] == [x[1]]


def test_tensorflow_depthwise_conv_refuses_a_stride_per_axis(eigen_kernels):
    """TensorFlow's depthwise convolution takes one stride for both axes. Workaround: such a
    convolution is a grouped Conv2D (`is_depthwise` in backends/keras/weights.py)."""
    assert "equal length strides" in eigen_kernels["depthwise"]


def test_tensorflow_transposed_conv_refuses_dilation_on_cpu(eigen_kernels):
    """TensorFlow's CPU kernel of a transposed convolution refuses dilation rates > 1.
    Workaround: the Keras kernel is the zero-dilated one (`dilates_kernel` in
    backends/keras/weights.py)."""
    assert "dilation rates larger than 1" in eigen_kernels["transposed"]


def test_tensorflow_folds_a_constant_column_into_a_bias_add():
    """TensorFlow's constant folding rewrites a bias add followed by the addition of a
    constant [N, 1] tensor computed in the graph (here `range`) into a BiasAdd of that
    tensor, which then fails in every tf.function (so in fit()); eagerly, and with constant
    folding off, it is right. Workaround: `_broadcast_last_axis` in backends/keras/lowering.py
    (the column broadcast to the full shape first)."""
    import tensorflow as tf

    x = np.ones((3, 3), np.float32)
    w, b = tf.Variable(np.eye(3, dtype=np.float32)), tf.Variable(np.ones(3, np.float32))

    def column() -> tf.Tensor:
        return tf.reshape(tf.range(3, dtype=tf.float32), (3, 1))

    def biased(x):
        return tf.nn.bias_add(tf.matmul(x, w), b) + column()

    def broadcast(x):
        return tf.nn.bias_add(tf.matmul(x, w), b) + tf.broadcast_to(column(), (3, 3))

    expected = x + 1 + np.arange(3, dtype=np.float32)[:, None]
    assert np.array_equal(biased(x).numpy(), expected)  # eagerly
    with pytest.raises(tf.errors.InvalidArgumentError, match="as many biases"):
        tf.function(biased)(x)
    assert np.array_equal(tf.function(broadcast)(x).numpy(), expected)


def test_keras_tensorflow_add_misreads_a_squeezable_operand_as_a_bias():
    """Keras's TensorFlow `ops.add(x, y)` (what a Keras variable's `+` calls) turns into
    `tf.nn.bias_add` whenever `y` squeezes to a vector as long as `x`'s axis 1 or last axis,
    whichever axis `y` was to broadcast along: a [4, 1] added to [3, 4, 4, 1] lands on axis 1.
    Workarounds: `_BiasAddEinsumDense` in backends/runtime/keras_helpers.py (MultiHeadAttention
    of head size 1) and `.value` on a variable left of `+` in backends/keras/lowering.py."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    x = np.zeros((3, 4, 4, 1), np.float32)
    y = np.arange(4, dtype=np.float32).reshape(4, 1)
    keras_sum = np.asarray(keras.ops.add(x, y))
    assert not np.array_equal(keras_sum, x + y)
    assert np.array_equal(keras_sum, x + y.reshape(4, 1, 1))  # along axis 1
    assert np.array_equal(np.asarray(keras.ops.add(x, np.broadcast_to(y, x.shape))), x + y)


def test_tensorflow_drops_the_new_axis_of_a_slice_of_a_stack_in_a_graph():
    """In a tf.function, TensorFlow's graph optimiser rewrites a strided slice with a new
    axis of a `tf.stack` into one without it: `stack(...)[None, 1:2]` is [1, 1, 11], not
    [1, 1, 1, 11] (so its gradient fails in fit()); eagerly it is right. Workaround:
    `_getitem` in backends/keras/lowering.py adds new axes with ops.expand_dims after the
    indexing."""
    import tensorflow as tf

    def sliced(h):
        return tf.stack([h, h * 0.5], -3)[None, 1:2]

    def expanded(h):
        return tf.expand_dims(tf.stack([h, h * 0.5], -3)[1:2], 0)

    h = tf.ones((1, 11))
    assert sliced(h).shape == (1, 1, 1, 11)  # eagerly
    assert tf.function(sliced)(h).shape == (1, 1, 11)
    assert tf.function(expanded)(h).shape == (1, 1, 1, 11)


_READ_BEFORE_UPDATE = """
import json
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
from tensorflow.python.grappler import tf_optimizer

v, w = tf.Variable(np.ones((3, 3))), tf.Variable(np.ones((3, 2)))
x, r = tf.constant(np.ones((4, 3))), tf.constant(np.ones((4, 2)))


@tf.function
def step():  # Keras's training step: its optimizer groups the gradients in an IdentityN
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.matmul(tf.matmul(x, v), w) * r)
    grads = tf.identity_n(tape.gradient(loss, [v, w]))
    v.assign_sub(0.1 * grads[0])
    w.assign_sub(0.1 * grads[1])
    return loss


def ancestors(nodes, name):
    inputs = {n.name: [i.lstrip("^").split(":")[0] for i in n.input] for n in nodes}
    seen, todo = set(), [name]
    while todo:
        for i in inputs[todo.pop()]:
            if i not in seen:
                seen.add(i)
                todo.append(i)
    return seen


def ordered(nodes):
    # per update, whether the read of the variable it updates precedes it (the resource
    # placeholder is the one input both ops share)
    reads = {n.input[0]: n.name for n in nodes if n.op == "ReadVariableOp"}
    return [reads[n.input[0]] in ancestors(nodes, n.name)
            for n in nodes if n.op == "AssignSubVariableOp"]


graph = step.get_concrete_function().graph
meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
fetch = meta_graph_pb2.CollectionDef()
fetch.node_list.value.extend(t.name for t in graph.outputs)
meta.collection_def["train_op"].CopyFrom(fetch)
out = {"traced": ordered(meta.graph_def.node)}
for name, off in (("optimized", []), ("without_dependency_optimizer", ["dependency_optimization"])):
    config = config_pb2.ConfigProto()
    config.graph_options.rewrite_options.min_graph_nodes = -1
    for option in off:
        setattr(config.graph_options.rewrite_options, option, 2)  # OFF
    out[name] = ordered(tf_optimizer.OptimizeGraph(config, meta).node)
print(json.dumps(out))
"""


def test_tensorflow_drops_the_order_of_a_read_before_its_update():
    """Grappler's dependency optimizer, on a training step whose gradients pass through an
    IdentityN (as Keras's optimizer groups them), removes the control edge that orders each
    variable's read before the step's assignment to it (redundant while the IdentityN joins
    the paths), then the IdentityN: nothing orders them any more, and a read may see the
    update. When no update needs the forward pass (a linear loss), some compiled steps
    compute their loss and gradients from updated weights. Workaround:
    `_reads_before_updates` in verify/train_parity.py (the pass off there)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [sys.executable, "-c", _READ_BEFORE_UPDATE],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["traced"] == [True, True] == out["without_dependency_optimizer"]
    assert out["optimized"] == [False, False]
