# Typed surface of optax that nnx and its tests use (optax ships no py.typed).
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax

Params = Any
Updates = Any
OptState = Any
ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]

class TransformInitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...

class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None
    ) -> tuple[Updates, OptState]: ...

class GradientTransformation(NamedTuple):
    init: TransformInitFn
    update: TransformUpdateFn

def apply_updates(params: Params, updates: Updates) -> Params: ...
def sgd(
    learning_rate: ScalarOrSchedule, momentum: float | None = None, nesterov: bool = False
) -> GradientTransformation: ...
def adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation: ...
def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 1e-4,
) -> GradientTransformation: ...
def chain(*args: GradientTransformation) -> GradientTransformation: ...
def softmax_cross_entropy_with_integer_labels(
    logits: jax.Array, labels: jax.Array
) -> jax.Array: ...
def sigmoid_binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array: ...

Schedule = Callable[[jax.Array | int], jax.Array]

def cosine_decay_schedule(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule: ...
def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> Schedule: ...
