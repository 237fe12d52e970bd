"""Built-in ops: importing this package fills `REGISTRY` from every op family."""

from dualnet.ops import (  # noqa: F401
    attention,
    broadcast,
    conv,
    create,
    dense,
    elementwise,
    free,
    gather,
    loss,
    norm,
    pool,
    recurrent,
    reduce,
    shape,
)
from dualnet.ops.registry import REGISTRY, OpDef

__all__ = ["REGISTRY", "OpDef"]
