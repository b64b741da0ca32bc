"""nnx.metrics: Average, Accuracy, MultiMetric against plain jnp, eagerly and in nnx.jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def test_average_is_the_mean_of_every_element():
    avg = nnx.metrics.Average()
    batches = [jnp.array([1.0, 2.0, 3.0]), jnp.array(10.0), jnp.arange(4.0).reshape(2, 2)]
    for b in batches:
        avg.update(values=b)
    expected = np.concatenate([np.ravel(b) for b in batches]).mean()
    np.testing.assert_allclose(avg.compute(), expected, rtol=1e-6)
    avg.reset()
    assert bool(jnp.isnan(avg.compute()))
    with pytest.raises(TypeError, match="expects the keyword 'values'"):
        avg.update(loss=1.0)


def test_accuracy_counts_argmax_hits():
    acc = nnx.metrics.Accuracy()
    logits = jax.random.normal(jax.random.key(0), (8, 5))
    labels = jnp.arange(8) % 5
    acc.update(logits=logits, labels=labels)
    np.testing.assert_allclose(acc.compute(), np.mean(np.argmax(logits, -1) == labels))
    with pytest.raises(ValueError, match="need labels of shape"):
        acc.update(logits=logits, labels=labels[:3])


def test_multimetric_routes_keywords_and_works_in_jit():
    metrics = nnx.metrics.MultiMetric(
        loss=nnx.metrics.Average("loss"), accuracy=nnx.metrics.Accuracy()
    )
    traces = []

    @nnx.jit
    def record(m: nnx.metrics.MultiMetric, loss: jax.Array, logits: jax.Array) -> None:
        traces.append(1)
        m.update(loss=loss, logits=logits, labels=jnp.array([0, 1]))

    record(metrics, jnp.array(1.0), jnp.array([[1.0, 0.0], [1.0, 0.0]]))
    record(metrics, jnp.array(3.0), jnp.array([[1.0, 0.0], [0.0, 1.0]]))
    values = metrics.compute()
    assert set(values) == {"loss", "accuracy"} and len(traces) == 1
    np.testing.assert_allclose(values["loss"], 2.0)
    np.testing.assert_allclose(values["accuracy"], 0.75)
    metrics.reset()
    assert bool(jnp.isnan(metrics.compute()["loss"]))
    with pytest.raises(TypeError, match=r"no metric takes \['typo'\]"):
        metrics.update(typo=1.0)
    with pytest.raises(TypeError, match="must be an nnx.metrics metric"):
        nnx.metrics.MultiMetric(loss=1.0)  # type: ignore[arg-type]
