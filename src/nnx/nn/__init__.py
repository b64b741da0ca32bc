"""Layers, activations and initializers.

Layers (`Linear`, `Conv`, `Embed`, `BatchNorm`, `LayerNorm`, `RMSNorm`, `GroupNorm`,
`Dropout`, `MultiHeadAttention`) are Modules with shape-annotated Variables; they take
a keyword-only `ctx` to draw their parameter keys from (`ctx.make_rng("params")`).
Every name is also exported by `nnx` itself (`nnx.Linear is nnx.nn.Linear`).

Example:
    ```python
    ctx = nnx.context(0)
    model = nnx.Sequence([nnx.Linear(4, 8, ctx=ctx), nnx.relu, nnx.Linear(8, 2, ctx=ctx)])
    assert model(jnp.ones((3, 4))).shape == (3, 2)
    ```
"""

from . import initializers as initializers
from ._activations import (
    celu as celu,
    elu as elu,
    gelu as gelu,
    glu as glu,
    hard_sigmoid as hard_sigmoid,
    hard_silu as hard_silu,
    hard_swish as hard_swish,
    hard_tanh as hard_tanh,
    leaky_relu as leaky_relu,
    log_sigmoid as log_sigmoid,
    log_softmax as log_softmax,
    logsumexp as logsumexp,
    normalize as normalize,
    one_hot as one_hot,
    relu as relu,
    relu6 as relu6,
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
from ._attention import (
    MultiHeadAttention as MultiHeadAttention,
    dot_product_attention as dot_product_attention,
    rotary_embedding as rotary_embedding,
)
from ._conv import Conv as Conv
from ._dtypes import canonicalize_dtype as canonicalize_dtype, promote_dtype as promote_dtype
from ._embed import Embed as Embed
from ._general import (
    ConvTranspose as ConvTranspose,
    Einsum as Einsum,
    LinearGeneral as LinearGeneral,
)
from ._linear import Linear as Linear
from ._lora import LoRA as LoRA, LoRALinear as LoRALinear, LoRAParam as LoRAParam
from ._normalization import (
    BatchNorm as BatchNorm,
    GroupNorm as GroupNorm,
    InstanceNorm as InstanceNorm,
    LayerNorm as LayerNorm,
    RMSNorm as RMSNorm,
)
from ._pooling import avg_pool as avg_pool, max_pool as max_pool, min_pool as min_pool
from ._prelu import PReLU as PReLU
from ._recurrent import (
    RNN as RNN,
    GRUCell as GRUCell,
    LSTMCell as LSTMCell,
    SimpleCell as SimpleCell,
)
from ._stochastic import Dropout as Dropout
