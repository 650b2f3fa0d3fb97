"""Weight sync: policy learner -> vLLM generator pool (DESIGN.md "Weight sync").

On CPU the tensors travel through Ray's object store: rank 0's `hf_weights` result is stored once
and every engine reads that one object (its ObjectRef is passed on, never fetched by the driver).
On GPU the same interface could use vLLM's NCCL weight-transfer engine instead.
"""

from __future__ import annotations

import logging
import time

import ray

from actors.generator import GeneratorPool
from actors.group import ActorGroup

__all__ = ["sync_policy_to_generators"]

log = logging.getLogger(__name__)


def sync_policy_to_generators(
    learner_group: ActorGroup, pool: GeneratorPool, timings: dict[str, float] | None = None
) -> int:
    """Push the policy's current weights to every engine; returns the weight version now served.

    `timings`, if given, receives "sync_s" (export + transfer + in-place reload) for monitoring.
    """
    t0 = time.perf_counter()
    version_ref = learner_group.rank0.weight_version.remote()
    weights_ref = learner_group.rank0.hf_weights.remote()  # stays in the object store
    version = int(ray.get(version_ref))
    pool.sync_weights(weights_ref, version)
    elapsed = time.perf_counter() - t0
    if timings is not None:
        timings["sync_s"] = elapsed
    log.info("weight sync: version %d to %d engine(s) in %.2fs", version, pool.num_engines, elapsed)
    return version
