"""ActorGroup on a real local Ray cluster, and the typed batches that cross process boundaries."""

from __future__ import annotations

import socket
import sys
import time

import pytest
import ray
import torch
import torch.distributed as dist

from actors.batch import PairBatch, PPOBatch, TokenBatch, pad_sequences
from actors.config import ResourceConfig
from actors import group as group_module
from actors.group import ActorGroup, RankContext, listen_port_range, resolve_backend, setup_rank

# The probe class lives in this test module, which Ray workers cannot import by name.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Probe:
    """A minimal rank: joins the group and answers with what it sees."""

    def __init__(self, tag: str, ctx: RankContext) -> None:
        setup_rank(ctx)
        self.tag, self.ctx = tag, ctx

    def info(self, scale: float) -> dict:
        t = torch.tensor([float(self.ctx.rank + 1)])
        dist.all_reduce(t)  # 1 + 2 over two ranks
        return {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": float(t) * scale,
                "threads": torch.get_num_threads(), "tag": self.tag, "backend": dist.get_backend()}

    def first_tokens(self, batch: TokenBatch) -> list[int]:
        return batch.tokens[:, 0].tolist()


@pytest.fixture(scope="module")
def probes(ray_cluster):
    group = ActorGroup(Probe, ResourceConfig(num_workers=2, num_cpus=0.25), init_args=("hello",), name="probe")
    yield group
    group.shutdown()


def test_ranks_join_one_process_group(probes):
    infos = probes.run("info", 2.0)
    assert [i["rank"] for i in infos] == [0, 1]
    assert all(i["world"] == 2 and i["sum"] == 6.0 and i["tag"] == "hello" for i in infos)
    assert all(i["threads"] == 1 and i["backend"] == "gloo" for i in infos)


def test_call_sharded_gives_each_rank_its_slice(probes):
    batch = TokenBatch(tokens=torch.arange(6).repeat_interleave(3).view(6, 3), loss_mask=torch.ones(6, 3))
    assert probes.run_sharded("first_tokens", batch) == [[0, 1, 2], [3, 4, 5]]
    same = ray.get(probes.call("first_tokens", batch))  # shared argument: every rank sees all rows
    assert same == [[0, 1, 2, 3, 4, 5]] * 2


def test_rendezvous_ports_come_from_below_the_ephemeral_range(tmp_path):
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("32768\t60999\n")
    assert listen_port_range(ranges) == (16384, 32767)
    ranges.write_text("49152 65535\n")
    assert listen_port_range(ranges) == (24576, 49151)
    ranges.write_text("1024 65535\n")  # everything ephemeral: a fixed block
    assert listen_port_range(ranges) == (20000, 29999)
    ranges.write_text("garbage")
    assert listen_port_range(ranges) == (16384, 32767)
    assert listen_port_range(tmp_path / "missing") == (16384, 32767)


@pytest.fixture
def taken_port():
    """A port something else listens on, as when a new connection took the probed port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_group_whose_rendezvous_port_was_taken_starts_again_on_another(ray_cluster, monkeypatch, taken_port):
    probed = []
    real = ActorGroup._address

    def first_taken(self, in_bundle):
        probed.append(taken_port if not probed else real(self, in_bundle)[1])
        return "127.0.0.1", probed[-1]

    monkeypatch.setattr(ActorGroup, "_address", first_taken)
    group = ActorGroup(Probe, ResourceConfig(num_workers=2, num_cpus=0.25), init_args=("again",), name="retry")
    try:
        assert len(probed) == 2 and probed[0] == taken_port != probed[1]
        infos = group.run("info", 1.0)
        assert [i["sum"] for i in infos] == [3.0, 3.0] and all(i["tag"] == "again" for i in infos)
    finally:
        group.shutdown()


def test_a_group_gives_up_on_taken_ports_after_its_attempts(ray_cluster, monkeypatch, taken_port):
    monkeypatch.setattr(group_module, "PORT_ATTEMPTS", 2)
    calls = []
    monkeypatch.setattr(ActorGroup, "_address", lambda self, b: calls.append(1) or ("127.0.0.1", taken_port))
    with pytest.raises(ray.exceptions.RayActorError, match="EADDRINUSE|address already in use"):
        ActorGroup(Probe, ResourceConfig(num_workers=1, num_cpus=0.25), init_args=("x",), name="taken")
    assert len(calls) == 2


def test_batch_not_divisible_by_ranks_is_a_clear_error(probes):
    batch = TokenBatch(tokens=torch.zeros(5, 4, dtype=torch.long), loss_mask=torch.ones(5, 4))
    with pytest.raises(ValueError, match="5 rows is not divisible by 2 ranks.*'probe'"):
        probes.shard(batch)
    with pytest.raises(ValueError, match="got 3 shards for 2 ranks"):
        probes.call_sharded("first_tokens", [batch, batch, batch])


def test_unsatisfiable_placement_group_fails_fast_naming_the_resource(ray_cluster):
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"'gpu-group'.*not ready after 2s.*GPU: need 1, cluster has 0"):
        ActorGroup(Probe, ResourceConfig(num_workers=1, num_cpus=0.25, num_gpus=1), init_args=("x",),
                   name="gpu-group", ready_timeout_s=2.0)
    assert time.perf_counter() - t0 < 15


def test_bad_resource_config_is_rejected_before_reserving(ray_cluster):
    with pytest.raises(ValueError, match="strategy 'DIAGONAL'"):
        ActorGroup(Probe, ResourceConfig(strategy="DIAGONAL"), name="bad")
    with pytest.raises(ValueError, match="num_workers must be >= 1"):
        ActorGroup(Probe, ResourceConfig(num_workers=0), name="bad")
    assert resolve_backend("auto", 0.0) == "gloo" and resolve_backend("auto", 1.0) == "nccl"
    with pytest.raises(ValueError, match="unknown torch.distributed backend 'mpi'"):
        resolve_backend("mpi", 0.0)


# ------------------------------------------------------------------------------------ batches


def test_token_batch_split_and_micro_batches():
    b = TokenBatch(tokens=torch.arange(12).view(6, 2), loss_mask=torch.ones(6, 2))
    shards = b.split(3)
    assert [s.tokens[:, 0].tolist() for s in shards] == [[0, 2], [4, 6], [8, 10]]
    assert [len(m) for m in b.micro_batches(4)] == [4, 2]
    assert torch.equal(b.slice(1, 3).loss_mask, torch.ones(2, 2))


def test_batches_validate_shapes_naming_the_field():
    with pytest.raises(ValueError, match=r"TokenBatch.loss_mask: expected shape \(2, 3\), got \(2, 4\)"):
        TokenBatch(tokens=torch.zeros(2, 3, dtype=torch.long), loss_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="TokenBatch.tokens: expected an integer tensor"):
        TokenBatch(tokens=torch.zeros(2, 3), loss_mask=torch.ones(2, 3))
    t = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"PPOBatch.advantages: expected shape \(2, 4\), got \(2, 5\)"):
        PPOBatch(t, torch.ones(2, 4), torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 5),
                 torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"PairBatch.rejected_last: rows \[1\] point outside \[0, 5\)"):
        PairBatch(t, torch.tensor([4, 4]), t, torch.tensor([4, 5]), torch.zeros(2))
    with pytest.raises(ValueError, match="chosen_safe and rejected_safe must be given together"):
        PairBatch(t, torch.tensor([4, 4]), t, torch.tensor([4, 4]), torch.zeros(2),
                  chosen_safe=torch.tensor([True, False]))


def test_pad_sequences_and_from_lists():
    assert pad_sequences([[1, 2, 3], [4]], pad_id=0).tolist() == [[1, 2, 3], [4, 0, 0]]
    assert pad_sequences([[1, 2, 3], [4]], pad_id=9, side="left").tolist() == [[1, 2, 3], [9, 9, 4]]
    b = TokenBatch.from_lists([[1, 5, 6], [1, 7]], [[0, 1, 1], [0, 1]])
    assert b.loss_mask.tolist() == [[0, 1, 1], [0, 1, 0]]
    with pytest.raises(ValueError, match="row 1 has 2 tokens but 3 mask values"):
        TokenBatch.from_lists([[1, 5, 6], [1, 7]], [[0, 1, 1], [0, 1, 1]])
    assert PPOBatch(torch.zeros(1, 3, dtype=torch.long), torch.tensor([[0.0, 1.0]]), *[torch.zeros(1, 2)] * 5
                    ).token_batch().loss_mask.tolist() == [[0, 0, 1]]
