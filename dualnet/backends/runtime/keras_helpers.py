"""Runtime helpers of generated Keras files: real code that dualnet never imports.

A few lowerings cannot be one plain Keras call: padding computed at run time, pooling
(adaptive pooling too), softplus and attention rules where Keras's behaviour differs from
dualnet's, sizes TensorFlow's shape inference loses, softmax beyond its rank limit, bilinear
upsampling of sizes known at run time only, the recurrent layers (a stack of Keras LSTM / GRU
layers returning PyTorch's states), BatchNorm's training step, PyTorch's initialisers
(`_TorchInit`, `_TorchKernelInit`; `_MultiHeadAttention` where one initializer per layer
cannot say it), Sequential steps the emitter inserts, and `_unchecked`. All are
channels-last like the generated model.
`runtime_source.helper_sources` reads each top-level definition's text from this file, and
the emitter pastes the ones a generated file uses (with the helpers those use) after its
imports. So a helper uses only the generated file's imports (below) and other helpers, and
is formatted as generated files are (ruff's defaults: `ruff.toml`).
"""

from __future__ import annotations

import keras
from keras import ops


def _shaped(x, *sizes):
    """`x` with its known `sizes` (None: only known at run time) told to TensorFlow, whose
    shape inference loses some (a slice of an axis of unknown size, a dilated convolution or
    padding computed at run time over one) that a layer after it builds from (a Dense its
    input features)."""
    shape = ops.shape(x)
    known = tuple(shape[i] if n is None else n for i, n in enumerate(sizes))
    return ops.reshape(x, known)


def _pad_same(x, kernel, stride):
    """Pads the spatial axes of channels-last `x` by TensorFlow's "same" rule, computed from
    x's sizes at run time: per axis, a total of max((ceil(n / s) - 1) * s + k - n, 0), the odd
    pixel at the end. A size known ahead stays known (a Dense after it builds from it)."""
    shape = ops.shape(x)
    pads = [(0, 0)]
    for n, k, s in zip(shape[1:-1], kernel, stride, strict=True):
        total = (n + s - 1) // s * s - s + k - n
        total = max(total, 0) if isinstance(total, int) else ops.maximum(total, 0)
        pads.append((total // 2, total - total // 2))
    return ops.pad(x, pads + [(0, 0)])


def _broadcast_apart(a, b):
    """`a` and `b` tiled to their broadcast shape: TensorFlow refuses to broadcast operands
    whose axes differ in more than five places (Tile does not)."""
    rank = max(len(a.shape), len(b.shape))
    a, b = (
        ops.reshape(x, (1,) * (rank - len(x.shape)) + tuple(ops.shape(x)))
        for x in (a, b)
    )
    sa, sb = ops.shape(a), ops.shape(b)
    out = [
        max(m, n) if isinstance(m, int) and isinstance(n, int) else ops.maximum(m, n)
        for m, n in zip(sa, sb, strict=True)
    ]
    return tuple(
        ops.tile(x, [o // n for o, n in zip(out, s, strict=True)])
        for x, s in ((a, sa), (b, sb))
    )


def _read_part(x, stride):
    """Channels-last `x` cropped to the elements a 1×1 convolution of `stride` reads (the
    first n - (n - 1) % s of each spatial axis): TensorFlow's oneDNN gradient of such a
    convolution writes out of bounds where the windows leave the end of an axis unread.
    `ops.slice`, whose gradient is a pad (a strided slice's gradient cost 3% of a ResNet-18
    training step). A size known ahead stays known."""
    shape = ops.shape(x)
    reads = [n - (n - 1) % s for n, s in zip(shape[1:-1], stride, strict=True)]
    known = all(isinstance(n, int) for n in shape[1:-1])
    if known and reads == list(shape[1:-1]):
        return x  # every element read
    y = ops.slice(x, (0,) * len(shape), (shape[0], *reads, shape[-1]))
    if known:
        return y
    # a bound read at run time: TensorFlow loses every sliced size, also the known ones
    return _shaped(
        y, *(n if isinstance(n, int) else None for n in (shape[0], *reads, shape[-1]))
    )


def _zero_upsample(x, stride):
    """Channels-last `x` with s - 1 zeros between neighbours along each spatial axis (s its
    `stride`): the input a transposed convolution of that stride spreads out, so that one
    with a 1-tap kernel runs at stride 1 over it (TensorFlow's oneDNN gradient of the strided
    one corrupts memory). A size known ahead stays known."""
    sizes = []
    for axis, s in enumerate(stride, start=1):
        shape = ops.shape(x)
        n = shape[axis]
        sizes.append((n - 1) * s + 1 if isinstance(n, int) else None)
        if s == 1:
            continue
        widths = [(0, 0)] * (len(shape) + 1)
        widths[axis + 1] = (0, s - 1)
        spread = ops.pad(ops.expand_dims(x, axis + 1), widths)
        spread = ops.reshape(spread, (*shape[:axis], n * s, *shape[axis + 1 :]))
        x = spread[(slice(None),) * axis + (slice(0, (n - 1) * s + 1),)]
    shape = ops.shape(x)
    batch, channels = (n if isinstance(n, int) else None for n in (shape[0], shape[-1]))
    return _shaped(x, batch, *sizes, channels)


def _avg_pool(x, kernel, stride, pads):
    """Average pooling of channels-last `x` padded by `pads` ((before, after) per spatial
    axis) that divides by the number of unpadded elements under each window
    (count_include_pad=False)."""
    width = ((0, 0), *pads, (0, 0))
    ones = ops.ones_like(x[:1, ..., :1])
    pool = _average_pool3d if len(kernel) == 3 else ops.average_pool
    total = pool(ops.pad(x, width), kernel, stride)
    return total / pool(ops.pad(ones, width), kernel, stride)


def _pool3d(pool, x, pool_size, strides=None, padding="valid"):
    """3-d pooling of channels-last `x` [B, D, H, W, C] by the 2-d `pool`: over (H, W), then
    over D (max and mean are separable, also where "same" leaves padding out). TensorFlow's
    3-d pooling has no float64 kernels and, with "same", reads from the wrong offset where a
    window is below its stride."""
    kernel = (pool_size,) * 3 if isinstance(pool_size, int) else pool_size
    strides = kernel if strides is None else strides
    strides = (strides,) * 3 if isinstance(strides, int) else strides
    batch, depth = ops.shape(x)[:2]
    height, width, channels = ops.shape(x)[2:]
    y = pool(
        ops.reshape(x, (-1, height, width, channels)),
        kernel[1:],
        strides[1:],
        padding=padding,
    )
    height, width = ops.shape(y)[1:3]
    y = ops.reshape(y, (batch, depth, height * width, channels))
    y = pool(y, (kernel[0], 1), (strides[0], 1), padding=padding)
    return ops.reshape(y, (batch, ops.shape(y)[1], height, width, channels))


def _max_pool3d(x, pool_size, strides=None, padding="valid"):
    """ops.max_pool of channels-last 3-d `x` (`_pool3d`)."""
    return _pool3d(ops.max_pool, x, pool_size, strides, padding)


def _average_pool3d(x, pool_size, strides=None, padding="valid"):
    """ops.average_pool of channels-last 3-d `x` (`_pool3d`)."""
    return _pool3d(ops.average_pool, x, pool_size, strides, padding)


def _adaptive_pool(x, axis, n, size):
    """Average pooling of axis `axis` of `x` from `n` to `size` elements over PyTorch's
    adaptive windows: output i is the mean of inputs floor(i·n/size) to
    ceil((i+1)·n/size) - 1."""
    lead = (slice(None),) * axis
    means = []
    for i in range(size):
        window = x[lead + (slice(i * n // size, -(-(i + 1) * n // size)),)]
        means.append(ops.mean(window, axis=axis, keepdims=True))
    return ops.concatenate(means, axis=axis)


def _gelu(x, approximate):
    """GELU (tanh approximation with `approximate`). In float64 it is PyTorch's formula:
    TensorFlow's float64 gelu kernels are off by up to 5e-9 (erf) and 9e-10 (tanh)."""
    if keras.backend.standardize_dtype(x.dtype) != "float64":
        return ops.gelu(x, approximate=approximate)
    if approximate:
        inner = (2 / 3.141592653589793) ** 0.5 * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1.0 + ops.tanh(inner))
    return 0.5 * x * (1.0 + ops.erf(x / 2.0**0.5))


def _softplus(x, beta, threshold):
    """PyTorch's softplus: log(1 + exp(beta * x)) / beta, and x itself where
    beta * x > threshold."""
    scaled = x * beta
    return ops.where(scaled > threshold, x, ops.softplus(scaled) / beta)


def _softmax(x, axis=-1, log=False):
    """softmax (log_softmax with `log`) of `x` along `axis`, at any rank: TensorFlow's kernel
    takes rank <= 5, so a higher-rank x is softmaxed as a matrix, its axis moved last and the
    other axes merged into rows, then given its shape back."""
    fn = ops.log_softmax if log else ops.softmax
    rank = ops.ndim(x)
    if rank <= 5:
        return fn(x, axis=axis)
    last = axis % rank == rank - 1
    moved = x if last else ops.moveaxis(x, axis, -1)
    shape = ops.shape(moved)
    y = ops.reshape(fn(ops.reshape(moved, (-1, shape[-1])), axis=-1), shape)
    return y if last else ops.moveaxis(y, -1, axis)


def _upsample_bilinear(x, scale):
    """Bilinear upsampling of channels-last `x` [B, H, W, C] by the integer factors `scale`,
    as PyTorch's align_corners=False, for sizes only known at run time (ops.image.resize wants
    them known when traced): output i of an axis of size n interpolates the inputs around
    (i + 0.5) / s - 0.5, clamped to [0, n - 1]."""
    for axis, s in zip((1, 2), scale, strict=True):
        n = ops.shape(x)[axis]
        out = ops.cast(ops.arange(n * s), x.dtype)
        centre = ops.maximum((out + 0.5) / s - 0.5, 0.0)
        lo = ops.cast(ops.floor(centre), "int32")
        hi = ops.minimum(lo + 1, n - 1)
        weight = ops.reshape(centre - ops.cast(lo, x.dtype), (-1,) + (1,) * (3 - axis))
        below, above = ops.take(x, lo, axis=axis), ops.take(x, hi, axis=axis)
        x = below * (1.0 - weight) + above * weight
    return x


def _causal_mask(queries, keys):
    """The top-left causal rule as a bool [queries, keys] mask: query i may attend key j
    when j <= i."""
    return ops.arange(keys)[None, :] <= ops.arange(queries)[:, None]


def _attention(q, k, v, mask=None, causal=False, bias=None, scale=None):
    """softmax(q k^T * scale + bias) v over [..., T, d] tensors (scale 1/sqrt(d) unless
    given), with a bool `mask` broadcast to [..., Tq, Tk] (true = may attend) and an optional
    top-left causal rule. A query that may attend no key gets all-zero attention weights, so
    its result is 0."""
    scores = ops.matmul(q, ops.swapaxes(k, -1, -2))
    if scale is None:
        d = ops.cast(ops.shape(q)[-1], q.dtype)  # read at run time: it may be symbolic
        scores = scores / ops.sqrt(d)
    else:
        scores = scores * scale
    if bias is not None:
        scores = scores + bias
    if causal:
        allowed = _causal_mask(ops.shape(q)[-2], ops.shape(k)[-2])
        mask = allowed if mask is None else ops.logical_and(mask, allowed)
    if mask is None:
        return ops.matmul(_softmax(scores), v)
    empty = ops.logical_not(ops.any(mask, axis=-1, keepdims=True))
    scores = ops.where(ops.logical_or(mask, empty), scores, float("-inf"))
    weights = ops.where(mask, _softmax(scores), 0.0)
    return ops.matmul(weights, v)


def _mha(attention, q, k, v, mask, causal=False, training=None):
    """Calls `attention`, a keras.layers.MultiHeadAttention, with dualnet's `mask` (bool
    [B, Tk] or [B, Tq, Tk], true = may attend) and top-left causal rule. A query that may
    attend no key gets all-zero attention weights, so its result is the output projection's
    bias (Keras alone would average over all keys)."""
    if ops.ndim(mask) == 2:
        mask = mask[:, None, :]
    if causal:
        mask = ops.logical_and(mask, _causal_mask(ops.shape(q)[1], ops.shape(k)[1]))
    empty = ops.logical_not(ops.any(mask, axis=-1, keepdims=True))
    y = attention(q, v, key=k, attention_mask=mask, training=training)
    bias = attention.output_dense.bias
    return ops.where(empty, 0.0 if bias is None else bias, y)


@keras.saving.register_keras_serializable(package="dualnet")
class _TorchInit(keras.initializers.Initializer):
    """PyTorch's initialisation of a weight (torch.nn.init), element by element i.i.d., with
    the fans PyTorch computes for the PyTorch tensor: "default" (a Linear's or a convolution's
    weight and bias) U(-b, b), b = 1 / sqrt(fan_in); "kaiming_uniform" b = gain * sqrt(3 /
    fan_in), gain = sqrt(2 / (1 + a^2)); "kaiming_normal" N(0, gain / sqrt(fan_in));
    "xavier_uniform" b = gain * sqrt(6 / (fan_in + fan_out)); "xavier_normal" N(0, gain *
    sqrt(2 / (fan_in + fan_out))); "normal" N(mean, std); "trunc_normal" N(mean, std) cut
    at a and b; "uniform" b = bound, or U(a, b); "constant" value; "zeros"; "ones" (`args`:
    a, gain, mean, std, b, value, torch.nn.init's defaults where not given). `terms` > 1
    sums as many draws (an LSTM's one Keras bias is PyTorch's bias_ih + bias_hh)."""

    def __init__(
        self, scheme, fan_in=None, fan_out=None, bound=None, terms=1, seed=None, **args
    ):
        self.scheme = scheme
        self.fan_in = fan_in
        self.fan_out = fan_out
        self.bound = bound
        self.terms = terms
        self.seed = seed
        self.args = args

    def __call__(self, shape, dtype=None):
        args = self.args
        if self.scheme in ("zeros", "ones"):
            return (ops.zeros if self.scheme == "zeros" else ops.ones)(shape, dtype)
        if self.scheme == "constant":
            return ops.full(shape, args["value"], dtype)
        if self.scheme == "trunc_normal":
            cut = (args.get("a", -2.0), args.get("b", 2.0))
            mean, std = args.get("mean", 0.0), args.get("std", 1.0)
            return _trunc_normal(mean, std, *cut, seed=self.seed)(shape, dtype)
        if self.scheme == "uniform" and self.bound is None:
            low, high = args.get("a", 0.0), args.get("b", 1.0)
            draw = keras.initializers.RandomUniform(low, high, seed=self.seed)
        else:
            uniform, scale = self._distribution()
            if uniform:
                draw = keras.initializers.RandomUniform(-scale, scale, seed=self.seed)
            else:
                mean = args.get("mean", 0.0)
                draw = keras.initializers.RandomNormal(mean, scale, seed=self.seed)
        if self.terms == 1:
            return draw(shape, dtype)
        return ops.sum(draw((self.terms, *shape), dtype), axis=0)

    def _distribution(self):
        """(whether uniform, its bound or standard deviation)."""
        if self.scheme == "default":
            return True, self.fan_in**-0.5
        if self.scheme == "uniform":
            return True, self.bound
        if self.scheme == "normal":
            return False, self.args.get("std", 1.0)
        family, _, kind = self.scheme.rpartition("_")
        if family == "kaiming":
            variance = 2.0 / (1 + self.args.get("a", 0.0) ** 2) / self.fan_in
        elif family == "xavier":
            variance = (
                self.args.get("gain", 1.0) ** 2 * 2.0 / (self.fan_in + self.fan_out)
            )
        else:
            raise ValueError(f"unknown initialisation {self.scheme!r}")
        if kind == "uniform":
            return True, (3.0 * variance) ** 0.5
        return False, variance**0.5

    def get_config(self):
        return {
            "scheme": self.scheme,
            "fan_in": self.fan_in,
            "fan_out": self.fan_out,
            "bound": self.bound,
            "terms": self.terms,
            "seed": self.seed,
            **self.args,
        }


@keras.saving.register_keras_serializable(package="dualnet")
class _KernelTaps(keras.constraints.Constraint):
    """The taps of a Keras kernel that holds a PyTorch kernel with zeros around it:
    zero-dilated (PyTorch's `kernel` sizes and `dilation`: zeros between the taps), or
    transposed [*k, out, in] with `groups` > 1 (zeros outside the diagonal blocks). As a
    constraint it keeps those zeros zero after every optimizer step (PyTorch has no
    weights there); dualnet's optimizers also give them no gradient (`taps`)."""

    def __init__(self, kernel=None, dilation=None, groups=1):
        self.kernel = kernel
        self.dilation = dilation
        self.groups = groups

    def taps(self, shape):
        """Where the kernel of `shape` holds PyTorch's weights (bool)."""
        taps = ops.ones(shape, "bool")
        pairs = zip(self.kernel or (), self.dilation or (), strict=True)
        for axis, (k, d) in enumerate(pairs):
            at = ops.arange(shape[axis])
            real = ops.logical_and(at % d == 0, at <= d * (k - 1))
            view = [1] * len(shape)
            view[axis] = shape[axis]
            taps = ops.logical_and(taps, ops.reshape(real, view))
        if self.groups > 1:
            out, cin = shape[-2], shape[-1]
            rows = ops.arange(out)[:, None] // (out // self.groups)
            block = rows == ops.arange(cin) // (cin // self.groups)
            taps = ops.logical_and(taps, block)
        return taps

    def __call__(self, w):
        return ops.where(self.taps(w.shape), w, ops.zeros_like(w))

    def get_config(self):
        return {"kernel": self.kernel, "dilation": self.dilation, "groups": self.groups}


@keras.saving.register_keras_serializable(package="dualnet")
class _TorchKernelInit(_TorchInit):
    """`_TorchInit` for a Keras kernel with zeros around PyTorch's taps (`_KernelTaps`)."""

    def __init__(self, scheme, kernel=None, dilation=None, groups=1, **kwargs):
        super().__init__(scheme, **kwargs)
        self.kernel = kernel
        self.dilation = dilation
        self.groups = groups

    def __call__(self, shape, dtype=None):
        values = super().__call__(shape, dtype)
        taps = _KernelTaps(self.kernel, self.dilation, self.groups).taps(shape)
        return ops.where(taps, values, ops.zeros_like(values))

    def get_config(self):
        return {
            **super().get_config(),
            "kernel": self.kernel,
            "dilation": self.dilation,
            "groups": self.groups,
        }


def _trunc_normal(mean, std, a, b, seed=None):
    """torch.nn.init.trunc_normal_'s draw as a Keras initializer: N(mean, std) cut at a and
    b, by the inverse of the normal CDF of a uniform draw between those of a and b (drawn
    by an initializer: a layer may be built inside a traced call)."""

    def erf(x):  # of a number, as a float64 tensor
        return ops.erf(ops.convert_to_tensor((x - mean) / (std * 2.0**0.5), "float64"))

    def initializer(shape, dtype=None):
        low, high = erf(a), erf(b)
        uniform = keras.initializers.RandomUniform(0.0, 1.0, seed=seed)
        u = low + (high - low) * uniform(shape, dtype="float64")
        x = ops.clip(ops.erfinv(u) * (std * 2.0**0.5) + mean, a, b)
        return ops.cast(x, dtype or keras.config.floatx())

    return initializer


@keras.saving.register_keras_serializable(package="dualnet")
class _Parameter(keras.layers.Layer):
    """A free tensor, dualnet's Parameter or Buffer (`dualnet_op`): one weight, `weight`, of
    `shape`, drawn as torch.nn.init's `init` with `args` ("zeros", "ones", "constant" value,
    "normal" mean/std, "uniform" a/b, "trunc_normal" mean/std/a/b, "table" values, a
    Buffer(expr) computed at compile time). Forward reads `weight`;
    a frozen Parameter or a Buffer is a non-trainable layer."""

    def __init__(
        self, shape, init="zeros", args=None, dualnet_op="Parameter", **kwargs
    ):
        super().__init__(**kwargs)
        self.dualnet_op = dualnet_op
        self.init = init
        self.args = dict(args or {})
        self.weight = self.add_weight(
            shape=tuple(shape), initializer=self._initializer(), name="weight"
        )
        self.built = True

    def _initializer(self):
        args = self.args
        if self.init in ("zeros", "ones"):
            return self.init
        if self.init == "constant":
            return keras.initializers.Constant(args["value"])
        if self.init == "table":  # values computed at compile time, row-major
            return lambda shape, dtype=None: ops.reshape(
                ops.convert_to_tensor(args["table"], dtype=dtype), shape
            )
        if self.init == "uniform":
            return keras.initializers.RandomUniform(args["a"], args["b"])
        if self.init == "normal":
            return keras.initializers.RandomNormal(args["mean"], args["std"])
        return _trunc_normal(args["mean"], args["std"], args["a"], args["b"])

    def get_config(self):
        return {
            **super().get_config(),
            "shape": tuple(self.weight.shape),
            "init": self.init,
            "args": self.args,
            "dualnet_op": self.dualnet_op,
        }


class _Tied(keras.layers.Layer):
    """A Linear (no bias) or an Embedding whose weight is another layer's (`tie=`): `weight`
    returns that layer's tensor in PyTorch's layout at each call, so both use one variable.
    `dualnet_tied` is the owner's state_dict name below the generated class holding it."""

    def __init__(self, weight, dualnet_op, dualnet_tied, **kwargs):
        super().__init__(**kwargs)
        self._weight = (
            weight  # a function: the variable is the owner's, not tracked here
        )
        self.dualnet_tied_op = dualnet_op
        self.dualnet_tied = dualnet_tied

    def call(self, x):
        if self.dualnet_tied_op == "Embedding":
            return ops.take(self._weight(), x, axis=0)
        return ops.matmul(x, ops.transpose(self._weight()))


@keras.saving.register_keras_serializable(package="dualnet")
class _MultiHeadAttention(keras.layers.MultiHeadAttention):
    """MultiHeadAttention initialised as PyTorch's nn.MultiheadAttention: the query, key and
    value kernels xavier-uniform over the packed [3 * dim, dim] projection, the output kernel
    as a Linear's, the biases zero (one kernel_initializer cannot say it). With head size 1,
    the q, k and v projections add their [heads, 1] biases as `_BiasAddEinsumDense`."""

    def __init__(self, num_heads, key_dim, **kwargs):
        dim = num_heads * key_dim
        kwargs.setdefault(
            "kernel_initializer",
            _TorchInit("xavier_uniform", fan_in=dim, fan_out=3 * dim),
        )
        # (the class name is no valid scope name)
        uid = keras.backend.get_uid("multi_head_attention")
        kwargs.setdefault("name", f"multi_head_attention_{uid}")
        super().__init__(num_heads, key_dim, **kwargs)
        # the scale 1 / sqrt(key_dim) in float64: Keras keeps a Python float, which
        # TensorFlow converts through float32 (a float64 model's scores were off by 1e-8)
        size = ops.convert_to_tensor(key_dim, "float64")
        self._inverse_sqrt_key_dim = ops.divide(1.0, ops.sqrt(size))

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        for dense in (self._query_dense, self._key_dense, self._value_dense):
            if dense.bias is not None and dense.bias.shape[-1] == 1:
                dense.__class__ = _BiasAddEinsumDense

    def _make_output_dense(self, query_shape, common_kwargs, name=None):
        dim = self._num_heads * self._key_dim
        initializer = _TorchInit("default", fan_in=dim)
        output = {**common_kwargs, "kernel_initializer": initializer}
        return super()._make_output_dense(query_shape, output, name)


class _BiasAddEinsumDense(keras.layers.EinsumDense):
    """EinsumDense adding its bias broadcast to the result's shape: Keras's TensorFlow
    `ops.add` takes a bias that squeezes to a vector for a bias add along axis 1 when that
    axis has its size (a head size 1 projection's [heads, 1] bias would be added along the
    sequence of [B, T, heads, 1] when T == heads)."""

    def call(self, inputs, training=None):
        x = ops.einsum(self.equation, inputs, self.kernel)
        if self.bias is not None:
            x = ops.add(x, ops.broadcast_to(self.bias, ops.shape(x)))
        return x


@keras.saving.register_keras_serializable(package="dualnet")
class _SummedBias(keras.constraints.Constraint):
    """Marks a Keras bias that is the sum of `terms` PyTorch tensors (an LSTM's bias_ih +
    bias_hh), each of which PyTorch steps: dualnet's optimizers step it `terms` times.
    It leaves the values as they are."""

    def __init__(self, terms=2):
        self.terms = terms

    def __call__(self, w):
        return w

    def get_config(self):
        return {"terms": self.terms}


@keras.saving.register_keras_serializable(package="dualnet")
class _Recurrent(keras.layers.Layer):
    """dualnet's batch-first LSTM or GRU: `num_layers` Keras LSTM / GRU layers (GRU with
    reset_after=True, PyTorch's equations) in sequence, each in
    Bidirectional(merge_mode="concat") when `bidirectional`. `cells` lists them, layer 0
    first, so get_weights() holds them layer by layer. Called with `state=True` it also
    returns the final h (and c for an LSTM) as [num_layers * directions, B, hidden], PyTorch's
    layout. Every weight starts as PyTorch's, U(-b, b) with b = 1 / sqrt(hidden) (an LSTM's
    bias: the sum of two, PyTorch's bias_ih + bias_hh)."""

    def __init__(self, dualnet_op, hidden, num_layers=1, bidirectional=False, **kwargs):
        prefix = f"{dualnet_op.lower()}_stack"  # the class name is no valid scope name
        kwargs.setdefault("name", f"{prefix}_{keras.backend.get_uid(prefix)}")
        super().__init__(**kwargs)
        self.dualnet_op = dualnet_op
        self.hidden = hidden
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.cells = [self._make_cell() for _ in range(num_layers)]

    def _make_cell(self):
        bound = self.hidden**-0.5
        if self.dualnet_op == "GRU":
            bias = _TorchInit("uniform", bound=bound)
            options = {"reset_after": True, "bias_initializer": bias}
        else:
            sum_of_two = _TorchInit("uniform", bound=bound, terms=2)
            options = {
                "unit_forget_bias": False,
                "bias_initializer": sum_of_two,
                "bias_constraint": _SummedBias(2),
            }
        layer = getattr(keras.layers, self.dualnet_op)(
            self.hidden,
            return_sequences=True,
            return_state=True,
            kernel_initializer=_TorchInit("uniform", bound=bound),
            recurrent_initializer=_TorchInit("uniform", bound=bound),
            **options,
        )
        if self.bidirectional:
            return keras.layers.Bidirectional(layer, merge_mode="concat")
        return layer

    def build(self, input_shape):
        shape = tuple(input_shape)
        for cell in self.cells:
            cell.build(shape)
            shape = (*shape[:-1], self.hidden * (2 if self.bidirectional else 1))

    def call(self, x, state=False):
        finals = []  # per layer and direction: h (LSTM: h, c)
        for cell in self.cells:
            x, *last = cell(x)
            finals += last
        if not state:
            return x
        if self.dualnet_op == "GRU":
            return x, ops.stack(finals)
        return x, ops.stack(finals[0::2]), ops.stack(finals[1::2])

    def get_config(self):
        return {
            **super().get_config(),
            "dualnet_op": self.dualnet_op,
            "hidden": self.hidden,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
        }


@keras.saving.register_keras_serializable(package="dualnet")
class _BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization over the last axis whose training step updates the moving
    variance with the unbiased batch variance (n / (n - 1) times the one it normalises by),
    as PyTorch's running_var; Keras's own uses the biased one. The statistics are computed
    in the variables' dtype (float32 under a mixed-precision policy)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("name", f"batch_norm_{keras.backend.get_uid('batch_norm')}")
        super().__init__(**kwargs)  # (the class name is no valid scope name)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(inputs, training=False)
        x = ops.cast(inputs, self.variable_dtype)
        axes = tuple(range(len(x.shape) - 1))
        mean, variance = ops.moments(x, axes=axes)
        n = ops.cast(ops.size(x) // ops.shape(x)[-1], variance.dtype)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        unbiased = variance * n / ops.maximum(n - 1.0, 1.0)
        self.moving_variance.assign(self.moving_variance * m + unbiased * (1.0 - m))
        y = ops.batch_normalization(
            x,
            mean,
            variance,
            axis=-1,
            offset=self.beta,
            scale=self.gamma,
            epsilon=self.epsilon,
        )
        return ops.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(package="dualnet")
class _StochasticDepth(keras.layers.Dropout):
    """torchvision's StochasticDepth: while training, zeroes each sample (mode "row") or the
    whole batch ("batch") with probability `rate` and scales what is kept by
    1 / (1 - rate); identity otherwise. A Dropout, so what turns dropout off (rate 0) turns
    it off."""

    def __init__(self, rate, mode="row", **kwargs):
        super().__init__(rate, **kwargs)
        self.mode = mode

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        rank = len(inputs.shape)
        first = ops.shape(inputs)[0] if self.mode == "row" else 1
        drawn = keras.random.uniform(
            (first,) + (1,) * (rank - 1), seed=self.seed_generator
        )
        keep = ops.cast(drawn >= self.rate, inputs.dtype)
        return inputs * keep / (1.0 - self.rate)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="dualnet")
class _NamedSequential(keras.Sequential):
    """A Sequential of named children (`Sequential({"conv": ..., "norm": ...})`): each
    step's state_dict name is its Keras name, not its position."""


@keras.saving.register_keras_serializable(package="dualnet")
class _BatchAxis(keras.layers.Layer):
    """A step a Sequential gets around a Dense that acts on a tensor without a batch axis
    (Dense wants one): adds a leading axis (`add`), or takes it away again."""

    def __init__(self, add: bool, **kwargs):
        super().__init__(**kwargs)
        self.add = add

    def call(self, x):
        return ops.expand_dims(x, 0) if self.add else ops.squeeze(x, 0)

    def get_config(self):
        return {**super().get_config(), "add": self.add}


@keras.saving.register_keras_serializable(package="dualnet")
class _Shaped(keras.layers.Layer):
    """A step after one whose known output sizes TensorFlow's shape inference loses: gives
    them back (`_shaped`; None: known only at run time)."""

    def __init__(self, sizes, **kwargs):
        super().__init__(**kwargs)
        self.sizes = tuple(sizes)

    def call(self, x):
        return _shaped(x, *self.sizes)

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes}


@keras.saving.register_keras_serializable(package="dualnet")
class _ZeroUpsample(keras.layers.Layer):
    """A step a Sequential gets before a transposed convolution with a 1-tap kernel and a
    stride > 1, which then runs at stride 1 (`_zero_upsample`)."""

    def __init__(self, stride, **kwargs):
        super().__init__(**kwargs)
        self.stride = tuple(stride)

    def call(self, x):
        return _zero_upsample(x, self.stride)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@keras.saving.register_keras_serializable(package="dualnet")
class _ReadPart(keras.layers.Layer):
    """A step a Sequential gets before a 1×1 convolution with a stride > 1 (`_read_part`)."""

    def __init__(self, stride, **kwargs):
        super().__init__(**kwargs)
        self.stride = tuple(stride)

    def call(self, x):
        return _read_part(x, self.stride)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@keras.saving.register_keras_serializable(package="dualnet")
class _PadSame(keras.layers.Layer):
    """A step a Sequential gets before a convolution whose padding="same" TensorFlow
    misreads: pads by TensorFlow's "same" rule at run time (`_pad_same`)."""

    def __init__(self, kernel, stride, **kwargs):
        super().__init__(**kwargs)
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def call(self, x):
        return _pad_same(x, self.kernel, self.stride)

    def get_config(self):
        return {**super().get_config(), "kernel": self.kernel, "stride": self.stride}


def _unchecked(model: str, where: str) -> keras.layers.Layer:
    """A configuration dualnet never checked: refuse it rather than guess sizes."""
    raise ValueError(
        f"{model}: dualnet checked no configuration that takes this branch "
        f"({where}); regenerate with such hyperparameters"
    )


def _loss_reduction(loss, reduction):
    """A per-element loss reduced as PyTorch does: mean, sum, batchmean (the sum over the
    size of axis 0) or none."""
    if reduction == "none":
        return loss
    if reduction == "mean":
        return ops.mean(loss)
    total = ops.sum(loss)
    return (
        total
        if reduction == "sum"
        else total / ops.cast(ops.shape(loss)[0], loss.dtype)
    )


def _class_weights(weight, rank):
    """Class weights [C] shaped to broadcast along axis 1 of a rank-`rank` tensor."""
    return ops.reshape(weight, (1, -1) + (1,) * (rank - 2))


def _class_loss(log_probs, target, ignore_index, reduction, smoothing=0.0, weight=None):
    """PyTorch's nll_loss of log-probabilities [N, C, ...] and class indices [N, ...] (with
    `smoothing`, cross_entropy's label smoothing; `weight` [C] weighs each class); a target
    equal to `ignore_index` counts for nothing, and the mean is over the others (divided by
    their weights' sum)."""
    keep = ops.not_equal(target, ignore_index)
    index = ops.where(keep, target, ops.zeros_like(target))
    picked = ops.take_along_axis(log_probs, ops.expand_dims(index, 1), axis=1)
    loss = -ops.squeeze(picked, 1)
    scale = ops.ones_like(loss) if weight is None else ops.take(weight, index)
    if weight is not None:
        loss = scale * loss
    if smoothing:
        weighted = (
            log_probs
            if weight is None
            else log_probs * _class_weights(weight, ops.ndim(log_probs))
        )
        loss = (1 - smoothing) * loss - smoothing * ops.mean(weighted, axis=1)
    loss = ops.where(keep, loss, ops.zeros_like(loss))
    if reduction == "mean":
        return ops.sum(loss) / ops.sum(ops.where(keep, scale, ops.zeros_like(scale)))
    return _loss_reduction(loss, reduction)


def _cross_entropy(
    x, target, weight=None, label_smoothing=0.0, ignore_index=-100, reduction="mean"
):
    """PyTorch's cross_entropy of logits x [N, C, ...] and class indices [N, ...]."""
    log_probs = _softmax(x, 1, log=True)
    return _class_loss(
        log_probs, target, ignore_index, reduction, label_smoothing, weight
    )


def _cross_entropy_probs(x, target, weight=None, label_smoothing=0.0, reduction="mean"):
    """PyTorch's cross_entropy of logits x [N, C, ...] and class probabilities of x's shape:
    -sum over classes of weight * ((1 - smoothing) * target + smoothing / C) * log_softmax,
    the mean over the examples."""
    classes = ops.cast(ops.shape(x)[1], x.dtype)
    target = target * (1 - label_smoothing) + label_smoothing / classes
    if weight is not None:
        target = target * _class_weights(weight, ops.ndim(x))
    loss = -ops.sum(target * _softmax(x, 1, log=True), axis=1)
    return _loss_reduction(loss, reduction)


def _smooth_l1(x, target, reduction="mean", beta=1.0):
    """PyTorch's smooth_l1_loss."""
    d = ops.abs(x - target)
    return _loss_reduction(
        ops.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction
    )


def _huber(x, target, reduction="mean", delta=1.0):
    """PyTorch's huber_loss."""
    d = ops.abs(x - target)
    return _loss_reduction(
        ops.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta)), reduction
    )


def _bce_with_logits(x, target, reduction="mean", pos_weight=None):
    """PyTorch's binary_cross_entropy_with_logits, by its stable formula."""
    softplus = ops.log1p(ops.exp(-ops.abs(x))) + ops.maximum(
        -x, 0.0
    )  # log(1 + exp(-x))
    scale = 1.0 if pos_weight is None else 1.0 + (pos_weight - 1.0) * target
    return _loss_reduction((1.0 - target) * x + scale * softplus, reduction)


def _kl_div(x, target, reduction="mean", log_target=False):
    """PyTorch's kl_div of log-probabilities x: target * (log target - x), 0 where target
    is 0 (exp(target) * (target - x) with `log_target`)."""
    if log_target:
        return _loss_reduction(ops.exp(target) * (target - x), reduction)
    positive = target > 0
    entropy = ops.where(
        positive, target * ops.log(ops.where(positive, target, 1.0)), 0.0
    )
    return _loss_reduction(entropy - target * x, reduction)


def _accuracy(x, target):
    """The fraction of examples whose argmax over axis 1 (the first on ties) is the target."""
    hits = ops.equal(ops.cast(ops.argmax(x, axis=1), target.dtype), target)
    return ops.mean(ops.cast(hits, x.dtype))


def _top_k_accuracy(x, target, k):
    """The fraction of examples whose target class has fewer than k classes scoring
    strictly higher (the target wins ties): x [N, C, ...], target [N, ...]."""
    own = ops.take_along_axis(x, ops.expand_dims(target, 1), axis=1)
    higher = ops.sum(ops.cast(x > own, "int32"), axis=1)
    return ops.mean(ops.cast(higher < k, x.dtype))
