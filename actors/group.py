"""A group of Ray actors on one placement group, joined by torch.distributed (DESIGN.md "Roles").

One rank per bundle. Before the actors exist, a zero-CPU task placed in bundle 0 finds rank 0's
address and a free port; every actor then receives its `RankContext` as the keyword argument `ctx`
and calls `setup_rank(ctx)` first thing in its constructor (composition: the actor class is a plain
class, the group wraps it with `ray.remote`). Phases follow STYLE.md habit 9: launch every remote
call of a phase, then gather once (`run`); shared arguments are put in the object store once.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.batch import split_rows
from actors.config import ResourceConfig

__all__ = ["RankContext", "setup_rank", "ActorGroup", "resolve_backend"]

log = logging.getLogger(__name__)

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
_PRIMITIVE = (int, float, str, bool, type(None))


@dataclass(frozen=True)
class RankContext:
    """What one rank needs to join its group; backend None means no process group (e.g. generators)."""

    rank: int
    world_size: int
    master_addr: str
    master_port: int
    backend: str | None
    torch_threads: int
    group_name: str


def resolve_backend(backend: str, num_gpus: float) -> str:
    """auto -> nccl when the ranks hold GPUs, gloo on CPU (ENVIRONMENT.md: gloo works between actors)."""
    if backend == "auto":
        return "nccl" if num_gpus > 0 else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"unknown torch.distributed backend {backend!r}; expected auto, gloo or nccl")
    return backend


def setup_rank(ctx: RankContext) -> None:
    """Threads, then the process group; env:// rendezvous needs MASTER_ADDR/PORT set before init."""
    torch.set_num_threads(ctx.torch_threads)
    if ctx.backend is None or torch.distributed.is_initialized():
        return
    if ctx.backend == "nccl":
        torch.cuda.set_device(0)  # Ray's CUDA_VISIBLE_DEVICES shows each rank only its own GPU(s)
    os.environ["MASTER_ADDR"] = ctx.master_addr
    os.environ["MASTER_PORT"] = str(ctx.master_port)
    os.environ["RANK"] = str(ctx.rank)
    os.environ["WORLD_SIZE"] = str(ctx.world_size)
    torch.distributed.init_process_group(
        backend=ctx.backend, rank=ctx.rank, world_size=ctx.world_size, init_method="env://"
    )
    log.info("group %s: rank %d/%d joined (%s)", ctx.group_name, ctx.rank, ctx.world_size, ctx.backend)


# Attempts at starting a group whose rank 0 found its rendezvous port taken (EADDRINUSE).
PORT_ATTEMPTS = 3
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def listen_port_range(ephemeral_range: Path = _EPHEMERAL_RANGE) -> tuple[int, int]:
    """Ports to offer a group's rank 0: the half below the kernel's ephemeral range.

    Outgoing connections take their local port from the ephemeral range, so a port found free there
    can be taken by any new connection in the seconds before rank 0 listens on it (seen: a PPO critic
    group died with EADDRINUSE in a demo run). Without /proc, Linux's default range starts at 32768.
    """
    try:
        low = int(ephemeral_range.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (low // 2, low - 1) if low >= 4096 else (20000, 29999)


@ray.remote(num_cpus=0)
def _free_address() -> tuple[str, int]:
    """Address of this node and a port free right now, outside the ephemeral range (rank 0 binds it
    moments later); any free port if none of 64 random tries is."""
    lo, hi = listen_port_range()
    rng = random.Random()
    for _ in range(64):
        port = rng.randint(lo, hi)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        return ray.util.get_node_ip_address(), port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return ray.util.get_node_ip_address(), port


def _port_taken(error: BaseException) -> bool:
    """Whether a rank died because its rendezvous port was in use."""
    text = str(error)
    return "EADDRINUSE" in text or "address already in use" in text.lower()


def _bundle(resources: ResourceConfig) -> dict[str, float]:
    bundle = {"CPU": float(resources.num_cpus), "GPU": float(resources.num_gpus)}
    bundle = {k: v for k, v in bundle.items() if v > 0}  # Ray rejects zero-valued bundle entries
    if not bundle:
        raise ValueError(f"ResourceConfig asks for no resources at all: {resources}")
    return bundle


def _validate_resources(resources: ResourceConfig, name: str) -> None:
    if resources.num_workers < 1:
        raise ValueError(f"group {name!r}: num_workers must be >= 1, got {resources.num_workers}")
    if resources.strategy not in _STRATEGIES:
        raise ValueError(f"group {name!r}: strategy {resources.strategy!r} is not one of {_STRATEGIES}")
    if resources.num_cpus < 0 or resources.num_gpus < 0 or resources.torch_threads < 1:
        raise ValueError(f"group {name!r}: negative resources or torch_threads < 1 in {resources}")


def _missing_resources(bundles: list[dict[str, float]]) -> str:
    """Which resources the bundles need beyond what the cluster has (total and free)."""
    need: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            need[k] = need.get(k, 0.0) + v
    total, free = ray.cluster_resources(), ray.available_resources()
    lines = [
        f"{k}: need {v:g}, cluster has {total.get(k, 0.0):g} (free {free.get(k, 0.0):g})"
        for k, v in need.items()
        if v > free.get(k, 0.0)
    ]
    return "; ".join(lines) if lines else f"need {need}, free {free} (maybe a strategy constraint)"


def _put_shared(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Put every non-primitive argument in the object store once, so N ranks do not get N copies."""
    def put(v: Any) -> Any:
        return v if isinstance(v, _PRIMITIVE) or isinstance(v, ray.ObjectRef) else ray.put(v)

    return tuple(put(a) for a in args), {k: put(v) for k, v in kwargs.items()}


class ActorGroup:
    """`resources.num_workers` instances of `actor_cls`, one per placement-group bundle.

    actor_cls(*init_args, ctx=RankContext, **init_kwargs) must call `setup_rank(ctx)` first.
    backend: "auto" | "gloo" | "nccl" to form a torch.distributed group, None for independent actors.
    """

    def __init__(
        self,
        actor_cls: type,
        resources: ResourceConfig,
        init_args: tuple = (),
        init_kwargs: dict[str, Any] | None = None,
        name: str = "group",
        backend: str | None = "auto",
        ready_timeout_s: float = 60.0,
    ) -> None:
        _validate_resources(resources, name)
        self.name = name
        self.resources = resources
        self.world_size = resources.num_workers
        self._backend = None if backend is None else resolve_backend(backend, resources.num_gpus)
        self._pg = self._reserve(ready_timeout_s)
        try:
            self.actors = self._start_retrying(actor_cls, init_args, init_kwargs or {}, ready_timeout_s)
        except BaseException:
            remove_placement_group(self._pg)
            raise

    def _reserve(self, timeout_s: float) -> PlacementGroup:
        bundles = [_bundle(self.resources) for _ in range(self.world_size)]
        pg = placement_group(bundles, strategy=self.resources.strategy, name=f"{self.name}-pg")
        if not pg.wait(timeout_seconds=timeout_s):
            missing = _missing_resources(bundles)
            remove_placement_group(pg)
            raise RuntimeError(
                f"group {self.name!r}: placement group of {len(bundles)} bundle(s) {bundles[0]} "
                f"(strategy {self.resources.strategy}) not ready after {timeout_s:g}s; {missing}"
            )
        return pg

    def _address(self, in_bundle: PlacementGroupSchedulingStrategy) -> tuple[str, int]:
        """Rendezvous address for rank 0, probed on rank 0's node."""
        return ray.get(_free_address.options(scheduling_strategy=in_bundle).remote())

    def _start_retrying(self, actor_cls: type, init_args: tuple, init_kwargs: dict, timeout_s: float) -> list:
        """`_start`, again with a new port when rank 0 found its rendezvous port taken."""
        for attempt in range(1, PORT_ATTEMPTS):
            try:
                return self._start(actor_cls, init_args, init_kwargs, timeout_s)
            except ray.exceptions.RayActorError as e:
                if self._backend is None or not _port_taken(e):
                    raise
                log.warning("group %s: rendezvous port taken (attempt %d of %d), starting again on another",
                            self.name, attempt, PORT_ATTEMPTS)
        return self._start(actor_cls, init_args, init_kwargs, timeout_s)

    def _start(self, actor_cls: type, init_args: tuple, init_kwargs: dict, timeout_s: float) -> list:
        t0 = time.perf_counter()
        in_bundle = [PlacementGroupSchedulingStrategy(self._pg, placement_group_bundle_index=i)
                     for i in range(self.world_size)]
        addr, port = self._address(in_bundle[0])
        remote_cls = ray.remote(actor_cls)
        init_args, init_kwargs = _put_shared(init_args, init_kwargs)
        actors = []
        for rank in range(self.world_size):
            ctx = RankContext(rank, self.world_size, addr, port, self._backend,
                              self.resources.torch_threads, self.name)
            actors.append(remote_cls.options(
                num_cpus=self.resources.num_cpus, num_gpus=self.resources.num_gpus,
                scheduling_strategy=in_bundle[rank],
            ).remote(*init_args, ctx=ctx, **init_kwargs))
        try:
            ray.get([a.__ray_ready__.remote() for a in actors], timeout=timeout_s)
        except BaseException:
            for a in actors:
                ray.kill(a)
            raise
        log.info("group %s: %d rank(s) ready in %.1fs", self.name, self.world_size, time.perf_counter() - t0)
        return actors

    @property
    def rank0(self) -> Any:
        return self.actors[0]

    def call(self, method: str, *args: Any, **kwargs: Any) -> list[ray.ObjectRef]:
        """The same call on every rank; large arguments are put in the object store once."""
        args, kwargs = _put_shared(args, kwargs)
        return [getattr(a, method).remote(*args, **kwargs) for a in self.actors]

    def call_sharded(self, method: str, shards: list, *args: Any, **kwargs: Any) -> list[ray.ObjectRef]:
        """Rank i gets shards[i] as its first argument; the remaining arguments are shared."""
        if len(shards) != self.world_size:
            raise ValueError(f"group {self.name!r}: got {len(shards)} shards for {self.world_size} ranks")
        args, kwargs = _put_shared(args, kwargs)
        return [getattr(a, method).remote(s, *args, **kwargs) for a, s in zip(self.actors, shards)]

    def shard(self, batch: Any) -> list:
        """Equal consecutive shards of a batch, one per rank (error if the rows do not divide)."""
        return split_rows(batch, self.world_size, what=f"group {self.name!r}")

    def run(self, method: str, *args: Any, **kwargs: Any) -> list:
        """`call` and gather: one ray.get for the phase."""
        return ray.get(self.call(method, *args, **kwargs))

    def run_sharded(self, method: str, batch: Any, *args: Any, **kwargs: Any) -> list:
        """Shard `batch` over the ranks, call, gather once."""
        return ray.get(self.call_sharded(method, self.shard(batch), *args, **kwargs))

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
        remove_placement_group(self._pg)
