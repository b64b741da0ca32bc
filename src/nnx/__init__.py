"""nnx: neural networks for JAX — a mutable, Pythonic Module system, statically typed
and shape-checked at run time."""

from importlib.metadata import PackageNotFoundError, version as _version
from typing import TYPE_CHECKING

from . import checkpoints as checkpoints, metrics as metrics, nn as nn
from ._collections import Dict as Dict, Sequence as Sequence, Sequential as Sequential
from ._compat import TraceState as TraceState
from ._context import (
    Context as Context,
    ContextDef as ContextDef,
    PureContext as PureContext,
    RngStream as RngStream,
    context as context,
)
from ._control_flow import (
    cond as cond,
    fori_loop as fori_loop,
    switch as switch,
    while_loop as while_loop,
)
from ._dataclasses import (
    dataclass as dataclass,
    field as field,
    node_field as node_field,
    param_field as param_field,
    static_field as static_field,
    var_field as var_field,
)
from ._errors import ShapeCheckError as ShapeCheckError, TraceContextError as TraceContextError
from ._eval_shape import eval_shape as eval_shape
from ._filters import (
    All as All,
    Everything as Everything,
    Filter as Filter,
    Not as Not,
    Nothing as Nothing,
    OfType as OfType,
    Path as Path,
    PathContains as PathContains,
    Predicate as Predicate,
    buffers as buffers,
    to_predicate as to_predicate,
)
from ._grad import grad as grad, value_and_grad as value_and_grad
from ._jit import jit as jit
from ._lift import LiftedCall as LiftedCall
from ._metadata import ContainerMetadata as ContainerMetadata, with_metadata as with_metadata
from ._module import (
    ApplyCaller as ApplyCaller,
    CloneCaller as CloneCaller,
    Module as Module,
    ModuleDef as ModuleDef,
    Pure as Pure,
    PureModule as PureModule,
)
from ._nodes import is_node as is_node, register_node_type as register_node_type
from ._pytree import Pytree as Pytree
from ._remat import (
    Remat as Remat,
    RematModule as RematModule,
    RematOptions as RematOptions,
    remat as remat,
)
from ._scan import (
    Scan as Scan,
    ScanModule as ScanModule,
    ScanOptions as ScanOptions,
    scan as scan,
)
from ._shape_checks import shape_checks as shape_checks
from ._spmd import (
    PARTITION_NAME as PARTITION_NAME,
    get_partition_spec as get_partition_spec,
    logical_axis_rules as logical_axis_rules,
    logical_to_mesh as logical_to_mesh,
    with_logical_constraint as with_logical_constraint,
    with_logical_partitioning as with_logical_partitioning,
)
from ._state import State as State
from ._summary import iter_modules as iter_modules, summary as summary
from ._var import var as var, variable_type as variable_type
from ._variables import (
    BatchStat as BatchStat,
    Cache as Cache,
    Container as Container,
    Intermediate as Intermediate,
    Node as Node,
    Param as Param,
    Static as Static,
    TreeNode as TreeNode,
    Variable as Variable,
)
from ._vmap import vmap as vmap
from .nn import (
    RNN as RNN,
    BatchNorm as BatchNorm,
    Conv as Conv,
    ConvTranspose as ConvTranspose,
    Dropout as Dropout,
    Einsum as Einsum,
    Embed as Embed,
    GroupNorm as GroupNorm,
    GRUCell as GRUCell,
    InstanceNorm as InstanceNorm,
    LayerNorm as LayerNorm,
    Linear as Linear,
    LinearGeneral as LinearGeneral,
    LoRA as LoRA,
    LoRALinear as LoRALinear,
    LoRAParam as LoRAParam,
    LSTMCell as LSTMCell,
    MultiHeadAttention as MultiHeadAttention,
    PReLU as PReLU,
    RMSNorm as RMSNorm,
    SimpleCell as SimpleCell,
    avg_pool as avg_pool,
    celu as celu,
    dot_product_attention as dot_product_attention,
    elu as elu,
    gelu as gelu,
    glu as glu,
    hard_sigmoid as hard_sigmoid,
    hard_silu as hard_silu,
    hard_swish as hard_swish,
    hard_tanh as hard_tanh,
    initializers as initializers,
    leaky_relu as leaky_relu,
    log_sigmoid as log_sigmoid,
    log_softmax as log_softmax,
    logsumexp as logsumexp,
    max_pool as max_pool,
    min_pool as min_pool,
    normalize as normalize,
    one_hot as one_hot,
    relu as relu,
    relu6 as relu6,
    rotary_embedding as rotary_embedding,
    selu as selu,
    sigmoid as sigmoid,
    silu as silu,
    soft_sign as soft_sign,
    softmax as softmax,
    softplus as softplus,
    standardize as standardize,
    swish as swish,
    tanh as tanh,
)

if TYPE_CHECKING:
    from ._optimizer import Optimizer as Optimizer, OptState as OptState
    from ._train_state import TrainState as TrainState
else:

    def __getattr__(name: str) -> object:
        # TrainState needs optax, an optional dependency: import it on first use.
        if name == "TrainState":
            from ._train_state import TrainState

            return TrainState
        if name in ("Optimizer", "OptState"):  # optax too
            from . import _optimizer

            return getattr(_optimizer, name)
        raise AttributeError(f"module 'nnx' has no attribute {name!r}")


try:
    __version__ = _version("nnx")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
