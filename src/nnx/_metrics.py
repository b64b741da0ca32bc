"""`nnx.metrics`: running metrics as Modules (`update`, `compute`, `reset`), whose
state is `MetricState` Variables, so they work eagerly and inside `nnx.jit` (their
state is written back like any other)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._module import Module
from ._variables import Variable

__all__ = ["Accuracy", "Average", "Metric", "MetricState", "MultiMetric"]


class MetricState(Variable[Any]):
    """A metric's running state (collection `"metric_state"`)."""

    __slots__ = ()


class Metric(Module):
    """The base of nnx's metrics: `update(**kwargs)`, `compute()`, `reset()`.

    `accepts` names the keywords `update` takes; `MultiMetric` routes keywords by it.
    """

    accepts: frozenset[str] = frozenset()

    def update(self, **kwargs: Any) -> None:
        """Fold a batch into the running state."""
        raise NotImplementedError

    def compute(self) -> Any:
        """The metric's value so far."""
        raise NotImplementedError

    def reset(self) -> None:
        """Back to the state before any update."""
        raise NotImplementedError


class Average(Metric):
    """The mean of every value given so far (all elements of every batch).

    Args:
        argname: The keyword `update` takes the values under. Default `"values"`.

    Example:
        ```python
        avg = nnx.metrics.Average("loss")
        avg.update(loss=jnp.array([1.0, 2.0]))
        avg.update(loss=jnp.array(6.0))
        assert float(avg.compute()) == 3.0
        avg.reset()
        assert jnp.isnan(avg.compute())
        ```
    """

    total: MetricState
    count: MetricState

    def __init__(self, argname: str = "values") -> None:
        self.argname = argname
        self.accepts = frozenset({argname})
        self.total = MetricState(jnp.array(0.0, jnp.float32))
        self.count = MetricState(jnp.array(0, jnp.int32))

    def update(self, **kwargs: Any) -> None:
        """Add the values under `argname` (an array or a number; every element counts).

        Raises:
            TypeError: If the keyword `argname` is missing.
        """
        if self.argname not in kwargs:
            raise TypeError(
                f"{type(self).__name__}.update expects the keyword {self.argname!r}, got "
                f"{sorted(kwargs)}"
            )
        values = jnp.asarray(kwargs[self.argname])
        self.total = self.total + values.sum(dtype=jnp.float32)
        self.count = self.count + values.size

    def compute(self) -> jax.Array:
        """`total / count` (NaN before any update)."""
        mean: jax.Array = self.total / self.count
        return mean

    def reset(self) -> None:
        """Zero the total and the count."""
        self.total = jnp.zeros_like(self.total)
        self.count = jnp.zeros_like(self.count)


class Accuracy(Average):
    """The fraction of examples whose highest logit is the label.

    `update(logits=..., labels=...)`: `logits` of shape `(..., classes)`, integer
    `labels` of shape `(...)`.

    Example:
        ```python
        acc = nnx.metrics.Accuracy()
        acc.update(logits=jnp.array([[0.1, 0.9], [0.8, 0.2]]), labels=jnp.array([1, 1]))
        assert float(acc.compute()) == 0.5
        ```
    """

    def __init__(self) -> None:
        super().__init__("values")
        self.accepts = frozenset({"logits", "labels"})

    def update(self, **kwargs: Any) -> None:
        """Count the correct predictions of a batch.

        Raises:
            TypeError: If `logits` or `labels` is missing.
            ValueError: If their shapes do not fit (`logits.shape[:-1] != labels.shape`).
        """
        missing = sorted({"logits", "labels"} - set(kwargs))
        if missing:
            raise TypeError(f"Accuracy.update expects logits= and labels=, missing {missing}")
        logits, labels = jnp.asarray(kwargs["logits"]), jnp.asarray(kwargs["labels"])
        if logits.shape[:-1] != labels.shape:
            raise ValueError(
                f"Accuracy.update: logits of shape {logits.shape} need labels of shape "
                f"{logits.shape[:-1]}, got {labels.shape}"
            )
        super().update(values=jnp.argmax(logits, axis=-1) == labels)


def _is_metric(x: object) -> bool:
    return isinstance(x, Metric)


class MultiMetric(Metric):
    """Several metrics updated together: `update(**kwargs)` gives each metric the
    keywords it accepts; `compute()` returns a dict by name.

    Args:
        **metrics: The metrics, by name (they become submodules).

    Example:
        ```python
        metrics = nnx.metrics.MultiMetric(
            loss=nnx.metrics.Average("loss"), accuracy=nnx.metrics.Accuracy()
        )
        metrics.update(
            loss=jnp.array(0.5), logits=jnp.array([[0.0, 1.0]]), labels=jnp.array([1])
        )
        assert {k: float(v) for k, v in metrics.compute().items()} == {
            "loss": 0.5,
            "accuracy": 1.0,
        }
        ```
    """

    def __init__(self, **metrics: Metric) -> None:
        for name, metric in metrics.items():
            if not _is_metric(metric):
                raise TypeError(
                    f"MultiMetric: {name}= must be an nnx.metrics metric, got "
                    f"{type(metric).__name__}"
                )
            setattr(self, name, metric)
        self.names = tuple(metrics)

    def _metrics(self) -> list[tuple[str, Metric]]:
        return [(name, getattr(self, name)) for name in self.names]

    def update(self, **kwargs: Any) -> None:
        """Update every metric with the keywords it accepts.

        Raises:
            TypeError: If a keyword is accepted by no metric.
        """
        unused = set(kwargs) - {a for _, m in self._metrics() for a in m.accepts}
        if unused:
            raise TypeError(f"MultiMetric.update: no metric takes {sorted(unused)}")
        for _, metric in self._metrics():
            metric.update(**{k: v for k, v in kwargs.items() if k in metric.accepts})

    def compute(self) -> dict[str, jax.Array]:
        """Every metric's value, by name."""
        return {name: metric.compute() for name, metric in self._metrics()}

    def reset(self) -> None:
        """Reset every metric."""
        for _, metric in self._metrics():
            metric.reset()
