"""`nnx.jit` with buffer donation (`donate_argnums` / `donate_argnames`): the same
results as without, no Module left holding a deleted buffer, and clear errors where
a buffer cannot be donated."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class MLP(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.l1 = nnx.Linear(4, 8, ctx=ctx)
        self.bn = nnx.BatchNorm(8, ctx=ctx)
        self.l2 = nnx.Linear(8, 1, ctx=ctx)
        self.frozen = nnx.BatchStat(jnp.arange(3.0))  # never changed by a step
        self.steps = nnx.var("steps", jnp.array(0))

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        return self.l2(jax.nn.relu(self.bn(self.l1(x), use_running_average=not train)))


def loss_fn(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((model(x, train=True) - y) ** 2)


def sgd_step(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    params = model.filter(nnx.Param)
    model.update_state(jax.tree.map(lambda p, g: p - 0.1 * g, params, grads))
    model.steps += 1
    return loss


def data() -> tuple[jax.Array, jax.Array]:
    kx, ky = jax.random.split(jax.random.key(1))
    return jax.random.normal(kx, (16, 4)), jax.random.normal(ky, (16, 1))


def leaves_of(model: nnx.Module) -> list[Any]:
    return [v.value for v in model.partition()[0].values()]


def assert_usable(model: nnx.Module) -> None:
    deleted = [path for path, v in model.partition()[0].items() if v.value.is_deleted()]
    assert deleted == []


@pytest.mark.parametrize(
    "options", [{"donate_argnums": 0}, {"donate_argnames": "model"}], ids=["argnums", "argnames"]
)
def test_donation_gives_the_undonated_losses_and_parameters(options: dict[str, Any]) -> None:
    x, y = data()
    plain_model, donated_model = MLP(ctx=nnx.context(0)), MLP(ctx=nnx.context(0))
    plain, donating = nnx.jit(sgd_step), nnx.jit(sgd_step, **options)
    for _ in range(4):
        before = leaves_of(donated_model)
        plain_loss = plain(plain_model, x, y)
        if "donate_argnames" in options:
            loss = donating(model=donated_model, x=x, y=y)
        else:
            loss = donating(donated_model, x, y)
        np.testing.assert_array_equal(loss, plain_loss)
        assert all(a.is_deleted() for a in before)  # every buffer was donated
        assert_usable(donated_model)
    for a, b in zip(leaves_of(plain_model), leaves_of(donated_model)):
        np.testing.assert_array_equal(a, b)
    assert int(donated_model.steps) == 4
    # an unchanged Variable came back with its value, in a live buffer
    np.testing.assert_array_equal(donated_model.frozen, jnp.arange(3.0))
    assert donated_model(x, train=False).shape == (16, 1)


def test_donation_keeps_one_trace() -> None:
    traces: list[int] = []

    @nnx.jit(donate_argnums=0)
    def step(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
        traces.append(1)
        return sgd_step(model, x, y)

    model, (x, y) = MLP(ctx=nnx.context(0)), data()
    for _ in range(3):
        step(model, x, y)
    assert len(traces) == 1


def test_donating_an_array_argument_and_a_module() -> None:
    # an optimizer state passed in and returned, donated with the model
    def step(model: MLP, momentum: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, Any]:
        grads = nnx.grad(loss_fn)(model, x, y)
        momentum = jax.tree.map(lambda m, g: 0.9 * m + g, momentum, grads)
        params = model.filter(nnx.Param)
        model.update_state(jax.tree.map(lambda p, m: p - 0.05 * m, params, momentum))
        return loss_fn(model, x, y), momentum

    x, y = data()
    m1, m2 = MLP(ctx=nnx.context(0)), MLP(ctx=nnx.context(0))
    mom1 = jax.tree.map(jnp.zeros_like, m1.filter(nnx.Param))
    mom2 = jax.tree.map(jnp.zeros_like, m2.filter(nnx.Param))
    plain, donating = nnx.jit(step), nnx.jit(step, donate_argnums=(0, 1))
    for _ in range(3):
        old = [v.value for v in mom2.values()]
        loss1, mom1 = plain(m1, mom1, x, y)
        loss2, mom2 = donating(m2, mom2, x, y)
        np.testing.assert_array_equal(loss1, loss2)
        assert all(a.is_deleted() for a in old)
    for a, b in zip(leaves_of(m1), leaves_of(m2)):
        np.testing.assert_array_equal(a, b)
    assert_usable(m2)


def test_only_the_donated_module_gives_up_its_buffers() -> None:
    def step(student: nnx.Linear, teacher: nnx.Linear, x: jax.Array) -> jax.Array:
        student.kernel = student.kernel + 0.0 * teacher(x).sum()
        return student(x)

    student, teacher = nnx.Linear(2, 2, ctx=nnx.context(0)), nnx.Linear(2, 2, ctx=nnx.context(1))
    student_before, teacher_before = leaves_of(student), leaves_of(teacher)
    nnx.jit(step, donate_argnames="student")(student, teacher, jnp.ones((1, 2)))
    assert all(a.is_deleted() for a in student_before)
    assert not any(a.is_deleted() for a in teacher_before)
    assert_usable(student)


def test_donation_with_stateful_false_leaves_the_module_as_it_was() -> None:
    model = nnx.Linear(2, 3, ctx=nnx.context(0))
    before = [np.asarray(a) for a in leaves_of(model)]
    peek = nnx.jit(lambda m, x: m(x), stateful=False, donate_argnums=0)
    out = peek(model, jnp.ones((1, 2)))
    assert out.shape == (1, 3)
    assert_usable(model)
    for a, b in zip(before, leaves_of(model)):
        np.testing.assert_array_equal(a, b)


def test_an_array_held_twice_by_a_module_is_not_donated() -> None:
    shared = jnp.ones((2,))
    model = nnx.Dict(a=nnx.Linear(2, 2, ctx=nnx.context(0)))
    model.x = nnx.Param(shared)
    model.y = nnx.BatchStat(shared)

    @nnx.jit(donate_argnums=0)
    def step(m: Any) -> jax.Array:
        m.x = m.x + 1
        return m.y.sum()

    assert float(step(model)) == 2.0
    assert not shared.is_deleted()
    assert_usable(model)
    np.testing.assert_array_equal(model.x, jnp.full((2,), 2.0))


def test_a_donated_argument_sharing_an_array_with_a_module_is_refused() -> None:
    model = nnx.Linear(2, 2, ctx=nnx.context(0))
    f = nnx.jit(lambda m, k: m.kernel + k, donate_argnums=1)
    with pytest.raises(ValueError, match="the donated argument 1 holds an array that another"):
        f(model, model.kernel)
    assert_usable(model)


def test_static_and_donated_overlap_is_refused() -> None:
    with pytest.raises(ValueError, match="argument 1 is both static and donated"):
        nnx.jit(lambda m, n: m, static_argnums=1, donate_argnums=1)


def test_donating_a_context_is_refused() -> None:
    model = nnx.Dropout(0.5)
    f = nnx.jit(lambda m, x, *, ctx: m(x, ctx=ctx), donate_argnames="ctx")
    with pytest.raises(ValueError, match="'ctx' is donated but holds a Context"):
        f(model, jnp.ones((3,)), ctx=nnx.context(dropout=0))


def test_donation_with_a_structural_change_inside() -> None:
    model = nnx.Linear(2, 2, ctx=nnx.context(0))

    @nnx.jit(donate_argnums=0)
    def add_stat(m: nnx.Linear) -> None:
        m.seen = nnx.BatchStat(jnp.ones(()))

    before = leaves_of(model)
    add_stat(model)
    assert float(model.seen) == 1.0
    assert all(a.is_deleted() for a in before)
    assert_usable(model)
