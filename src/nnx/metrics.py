"""Running metrics as Modules: `Average`, `Accuracy`, `MultiMetric` (`update`,
`compute`, `reset`); their state is `MetricState` Variables, written back by `nnx.jit`.

Example:
    ```python
    metrics = nnx.metrics.MultiMetric(loss=nnx.metrics.Average("loss"))

    @nnx.jit
    def record(metrics: nnx.metrics.MultiMetric, loss: jax.Array) -> None:
        metrics.update(loss=loss)

    record(metrics, jnp.array(1.0))
    record(metrics, jnp.array(3.0))
    assert float(metrics.compute()["loss"]) == 2.0
    ```
"""

from ._metrics import (
    Accuracy as Accuracy,
    Average as Average,
    Metric as Metric,
    MetricState as MetricState,
    MultiMetric as MultiMetric,
)

__all__ = ["Accuracy", "Average", "Metric", "MetricState", "MultiMetric"]
