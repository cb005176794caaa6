"""The metrics backends under the dotted paths operators configure.

``REGRESSION_TRACKING_METRICS_BACKEND=regression_tracking.metrics.StatsdBackend`` keeps working;
the code lives in ``regression_tracking.ops.metrics``.
"""

from regression_tracking.ops.metrics import (
    InMemoryBackend,
    MetricsBackend,
    NoopBackend,
    PrometheusBackend,
    StatsdBackend,
)

__all__ = ["InMemoryBackend", "MetricsBackend", "NoopBackend", "PrometheusBackend", "StatsdBackend"]
