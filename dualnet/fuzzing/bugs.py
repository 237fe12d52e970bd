"""Bugs the fuzzer found that are reported but not fixed yet."""

# Bugs the fuzzer found that are reported but not fixed yet: the generator steers around
# each (search for its name). Delete an entry once fixed, and those programs come back.
KNOWN_BUGS = {
    "keras-linear-rank1": "Keras: a Linear step of a Sequential on a rank-1 input is refused "
    "(E-BACKEND; a direct call works)",
    "keras-bilinear-symbolic": "Keras: bilinear upsample of a symbolic size fails to build",
    "keras-submodel-sizes": "Keras: a size-dependent op (reshape, flatten) in a submodel "
    "whose argument has a size like (W + 2) // 3: `cannot find the "
    "size W at run time`",
    "keras-softmax-rank6": "Keras: softmax (also in attention) of a rank-6 tensor: "
    "TensorFlow's kernel takes rank <= 5",
    "keras-dense-static": "Keras: a Linear whose input size TensorFlow cannot infer "
    "statically (after a dilated conv over a symbolic size, or an "
    "index like x[:, -2] of a symbolic size) cannot be built",
    "ort-pad-fusion": "ONNX Runtime: its Pad fusion makes a pool whose padding is not "
    "smaller than its kernel, and fails (pad then avg_pool2d)",
    "convt-output-padding": "Keras and ONNX: ConvTranspose2d with stride <= output_padding "
    "< dilation (valid in PyTorch): wrong kernel / ORT refuses",
    "keras-sequential-layout": "Keras refuses a generated Sequential(Block() for i in ...) "
    "whose blocks take channels-last and give channels-first "
    "(E-BACKEND: declare them one by one)",
    "keras-adaptive-pool": "Keras: adaptive_avg_pool2d that pools one axis and takes the "
    "other to size 1 or over a symbolic size (Keras's adaptive "
    "pooling fails in graph mode / needs static sizes)",
    "tf-onednn-conv": "TensorFlow (oneDNN): Conv2d/3d of one input channel with a stride on "
    "the last axis and an output width of 1, batch and height >= 2, "
    "returns garbage",
}


def avoid(bug: str) -> bool:
    return bug in KNOWN_BUGS
