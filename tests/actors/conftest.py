"""Shared fixtures for the actor tests: one local Ray cluster for the whole session.

ENVIRONMENT.md: `ray.init(num_cpus=2, include_dashboard=False)` starts in ~2.5 s; CI kills nothing,
so the fixture shuts Ray down at the end. Actors ask for fractional CPUs so several fit on 2 cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import ray


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict]:
    """A local 2-CPU Ray cluster; yields its resources. Reuses a cluster started by someone else."""
    started = not ray.is_initialized()
    if started:
        # Workers import the project from the work tree even without an editable install.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=True,
            runtime_env={"env_vars": {"PYTHONPATH": root, "TOKENIZERS_PARALLELISM": "false"}},
        )
    yield ray.cluster_resources()
    if started:
        ray.shutdown()
