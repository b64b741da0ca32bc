"""Shared test configuration.

XLA_FLAGS must be set before jax is first imported, so that the host platform
exposes 8 CPU devices (what CI uses).
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import hypothesis

hypothesis.settings.register_profile(
    "nnx",
    deadline=None,
    max_examples=60,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.register_profile(
    "nnx-thorough",
    deadline=None,
    max_examples=1000,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile(os.environ.get("NNX_HYPOTHESIS_PROFILE", "nnx"))
