"""nnx.summary and nnx.iter_modules; nnx.Sequential."""

import jax.numpy as jnp
import numpy as np

import nnx


class Net(nnx.Module):
    def __init__(self) -> None:
        self.enc = nnx.Sequential(
            nnx.Linear(4, 8, ctx=nnx.context(0)), nnx.relu, nnx.Linear(8, 8, ctx=nnx.context(1))
        )
        self.bn = nnx.BatchNorm(8, ctx=nnx.context(0))
        self.shared = self.enc  # shared: listed once


def test_summary_lists_modules_variables_and_totals():
    table = nnx.summary(Net())
    lines = table.splitlines()
    assert [c.strip() for c in lines[0].split(" │ ")] == ["path", "type", "variables", "size"]
    body = "\n".join(lines[2:])
    assert "enc/0  │ Linear" in body and "bias: float32[8], kernel: float32[4,8]" in body
    assert "bn     │ BatchNorm" in body and "batch_stats: 16 (64 B), params: 16 (64 B)" in body
    assert "shared" not in body  # a shared submodule appears once
    # 4*8+8 + 8*8+8 + 8+8 = 128 params of 4 bytes
    assert lines[-1] == "Total: 128 params (512 B); batch_stats: 16 (64 B), params: 128 (512 B)"


def test_iter_modules_is_modules():
    net = Net()
    assert [p for p, _ in nnx.iter_modules(net)] == [p for p, _ in net.modules()]
    assert [p for p, _ in nnx.iter_modules(net)] == [(), ("bn",), ("enc",), ("enc", 0), ("enc", 2)]


def test_sequential_chains_and_partitions_like_a_sequence():
    a, b = nnx.Linear(2, 3, ctx=nnx.context(0)), nnx.Linear(3, 1, ctx=nnx.context(1))
    model = nnx.Sequential(a, nnx.relu, b)
    x = jnp.ones((4, 2))
    np.testing.assert_allclose(model(x), b(nnx.relu(a(x))))
    assert isinstance(model, nnx.Sequence) and model[0] is a and len(model) == 3
    state, moduledef = model.partition()
    assert (0, "kernel") in state and (2, "bias") in state
    np.testing.assert_allclose(moduledef.merge(state)(x), model(x))
