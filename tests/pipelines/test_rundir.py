"""RunDir layout, manifests (round trip, is_done, corrupt files), require(), atomic writes, config_hash."""
from __future__ import annotations

import json
import time

import pytest

from pipelines.rundir import RunDir, atomic_write_text, config_hash


def _write(run: RunDir, stage: str = "sft", **kw) -> None:
    args = dict(status="done", cfg_hash="abc123", inputs={"data": "data/sft.parquet"},
                outputs={"checkpoint": "checkpoints/sft"})
    args.update(kw)
    run.write_manifest(stage, **args)


def test_create_makes_the_layout(tmp_path):
    run = RunDir.create(tmp_path / "run")
    assert run.root == (tmp_path / "run").resolve()
    for sub in ("data", "tokenizer", "checkpoints", "tb", "manifests", "eval"):
        assert (run.root / sub).is_dir(), sub
    assert run.data == run.root / "data"
    assert run.tokenizer == run.root / "tokenizer"
    assert run.tb == run.root / "tb"
    assert run.checkpoint("sft") == run.root / "checkpoints" / "sft"
    assert run.eval_results("ppo") == run.root / "eval" / "ppo.parquet"
    assert run.manifest_path("gatt") == run.root / "manifests" / "gatt.json"


def test_create_twice_keeps_existing_content(tmp_path):
    run = RunDir.create(tmp_path)
    (run.data / "x.parquet").write_text("keep")
    RunDir.create(tmp_path)
    assert (run.data / "x.parquet").read_text() == "keep"


def test_create_with_relative_path_resolves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = RunDir.create("rel")
    assert run.root == tmp_path.resolve() / "rel"
    assert run.root.is_absolute()


def test_create_with_empty_run_dir_is_an_error():
    with pytest.raises(ValueError, match="run_dir is empty"):
        RunDir.create("")


def test_manifest_round_trip(tmp_path):
    run = RunDir.create(tmp_path)
    started = time.time() - 3.0
    _write(run, metrics={"loss": 1.25, "history": [1, 2]}, started=started)
    m = run.read_manifest("sft")
    assert m["stage"] == "sft"
    assert m["status"] == "done"
    assert m["config_hash"] == "abc123"
    assert m["inputs"] == {"data": "data/sft.parquet"}
    assert m["outputs"] == {"checkpoint": "checkpoints/sft"}
    assert m["metrics"] == {"loss": 1.25, "history": [1, 2]}
    assert m["started"] == started
    assert m["finished"] >= started + 3.0
    assert 3.0 <= m["seconds"] < 60.0
    assert m["seconds"] == pytest.approx(m["finished"] - started, abs=0.01)


def test_manifest_without_start_or_metrics(tmp_path):
    run = RunDir.create(tmp_path)
    _write(run)
    m = run.read_manifest("sft")
    assert m["metrics"] == {}
    assert m["started"] is None and m["seconds"] is None


def test_manifest_overwrite_replaces_it(tmp_path):
    run = RunDir.create(tmp_path)
    _write(run, status="running")
    _write(run, status="done", cfg_hash="new")
    m = run.read_manifest("sft")
    assert (m["status"], m["config_hash"]) == ("done", "new")


def test_missing_manifest_reads_as_none(tmp_path):
    assert RunDir.create(tmp_path).read_manifest("ppo") is None


def test_is_done_needs_status_done_and_the_same_hash(tmp_path):
    run = RunDir.create(tmp_path)
    assert run.is_done("sft", "abc123") is False  # no manifest yet
    _write(run, status="running")
    assert run.is_done("sft", "abc123") is False
    _write(run, status="failed")
    assert run.is_done("sft", "abc123") is False
    _write(run, status="done")
    assert run.is_done("sft", "abc123") is True
    assert run.is_done("sft", "other") is False
    assert run.is_done("ppo", "abc123") is False  # another stage


def test_truncated_manifest_is_a_clear_error_naming_the_file(tmp_path):
    run = RunDir.create(tmp_path)
    _write(run)
    path = run.manifest_path("sft")
    path.write_text(path.read_text()[:20])
    with pytest.raises(ValueError, match="not valid JSON") as e:
        run.read_manifest("sft")
    assert str(path) in str(e.value)
    assert "'sft'" in str(e.value)
    with pytest.raises(ValueError, match="sft.json"):
        run.is_done("sft", "abc123")


def test_binary_garbage_manifest_is_a_clear_error_naming_the_file(tmp_path):
    run = RunDir.create(tmp_path)
    path = run.manifest_path("sft")
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(ValueError, match="not valid JSON") as e:
        run.read_manifest("sft")
    assert str(path) in str(e.value)


@pytest.mark.parametrize("body", ["[1, 2]", '"done"', "3", "null"])
def test_manifest_that_is_not_an_object_is_a_clear_error(tmp_path, body):
    run = RunDir.create(tmp_path)
    path = run.manifest_path("sft")
    path.write_text(body)
    with pytest.raises(ValueError, match="not a JSON object") as e:
        run.is_done("sft", "abc123")
    assert str(path) in str(e.value)


def test_require_returns_existing_path(tmp_path):
    run = RunDir.create(tmp_path)
    p = run.data / "sft.parquet"
    p.write_text("x")
    assert run.require(p, "data") == p


def test_require_names_the_producing_stage(tmp_path):
    run = RunDir.create(tmp_path)
    p = run.checkpoint("sft")
    with pytest.raises(FileNotFoundError) as e:
        run.require(p, "sft")
    msg = str(e.value)
    assert str(p) in msg
    assert "produced by stage 'sft'" in msg
    assert f"stage=sft run_dir={run.root}" in msg


def test_atomic_write_text_writes_creates_parents_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "report.md"
    atomic_write_text(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    atomic_write_text(target, "second")
    assert target.read_text(encoding="utf-8") == "second"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]


def test_atomic_write_text_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old content")
    with pytest.raises(TypeError):
        atomic_write_text(target, {"not": "a string"})  # file.write raises inside the temp write
    assert target.read_text() == "old content"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_atomic_write_text_failure_on_a_new_file_creates_nothing(tmp_path):
    target = tmp_path / "new.json"
    with pytest.raises(TypeError):
        atomic_write_text(target, 12345)
    assert list(tmp_path.iterdir()) == []


def test_config_hash_is_stable_across_key_order():
    a = {"lr": 1e-5, "epochs": 2, "nested": {"x": 1, "y": [1, 2]}}
    b = {"nested": {"y": [1, 2], "x": 1}, "epochs": 2, "lr": 1e-5}
    assert config_hash(a) == config_hash(b)
    h = config_hash(a)
    assert len(h) == 16 and all(c in "0123456789abcdef" for c in h)
    assert config_hash(json.loads(json.dumps(a))) == h  # a JSON round trip does not change it


def test_config_hash_changes_with_values():
    base = {"lr": 1e-5, "epochs": 2, "nested": {"x": 1, "y": [1, 2]}}
    variants = [
        {"lr": 2e-5, "epochs": 2, "nested": {"x": 1, "y": [1, 2]}},
        {"lr": 1e-5, "epochs": 3, "nested": {"x": 1, "y": [1, 2]}},
        {"lr": 1e-5, "epochs": 2, "nested": {"x": 1, "y": [2, 1]}},  # list order matters
        {"lr": 1e-5, "epochs": 2, "nested": {"x": 1, "y": [1, 2]}, "extra": None},
    ]
    hashes = {config_hash(base)} | {config_hash(v) for v in variants}
    assert len(hashes) == 1 + len(variants)
