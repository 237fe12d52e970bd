"""PyTorch's ConvTranspose1d/2d/3d output padding where a backend's transposed convolution
takes less.

PyTorch allows an output_padding up to max(stride, dilation) - 1; Keras's Conv*DTranspose and
ONNX Runtime's ConvTranspose want it below the stride. On an axis whose output_padding o is not
below its stride s, the backend's convolution gets output padding 0 and m zero rows appended to
its input instead: each adds s output rows holding only the bias, as PyTorch's output padding
rows beyond the full result do, and the extra rows are cropped at the end with PyTorch's
padding p. m is the fewest rows that leave a crop ≥ 0: with the input n + m long, the full
result is (n + m - 1)·s + k' (k' the dilated kernel); PyTorch's output is its rows p to
(n - 1)·s + k' - p + o, so the crop after is p + m·s - o.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransposedPadding:
    """Per spatial axis: `rows` of zeros appended to the input, the backend's
    `output_padding` (below the stride), and the (before, after) `crops` of its output (ONNX:
    its `pads`). Axes whose output padding is below the stride keep it, no rows, and crop
    PyTorch's padding."""

    rows: tuple[int, ...]
    output_padding: tuple[int, ...]
    crops: tuple[tuple[int, int], ...]


def transposed_padding(attrs: dict) -> TransposedPadding:
    """The `TransposedPadding` of a ConvTranspose's resolved attrs (stride, pads,
    output_padding)."""
    rows, output_padding, crops = [], [], []
    for s, (before, after), o in zip(
        attrs["stride"], attrs["pads"], attrs["output_padding"], strict=True
    ):
        if o < s:
            rows.append(0)
            output_padding.append(o)
            crops.append((before, after))
            continue
        m = max(0, -(-(int(o) - int(after)) // int(s)))
        rows.append(m)
        output_padding.append(0)
        crops.append((before, int(after) + m * int(s) - int(o)))
    return TransposedPadding(tuple(rows), tuple(output_padding), tuple(crops))
