"""The bundle writer: Parquet files through the data layer, summary counts that match them, the CLI."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from pipelines.data import read_table
from pipelines.world import BundleConfig
from pipelines.world.bundle import main, write_bundle

FILES = {
    "pretrain": "text", "sft": "dialogues", "helpfulness_pairs": "preferences", "safety_pairs": "preferences",
    "rl_prompts": "prompts", "eval_prompts": "prompts", "eval_dialogues": "dialogues", "gatt_dialogues": "dialogues",
}
SIZE_FIELD = {"pretrain": "pretrain_docs", "sft": "sft_dialogues", "helpfulness_pairs": "helpfulness_pairs",
              "safety_pairs": "safety_pairs", "rl_prompts": "rl_prompts", "eval_dialogues": "eval_dialogues",
              "gatt_dialogues": "gatt_dialogues"}  # eval_prompts: the sum of three sizes, checked below
TINY = BundleConfig().scaled(0.03)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    start = time.perf_counter()
    summary = write_bundle(out, TINY, seed=3)
    return out, summary, time.perf_counter() - start


def test_writes_every_dataset_quickly_and_the_summary_matches_the_files(written):
    out, summary, seconds = written
    assert seconds < 10
    assert json.loads((out / "summary.json").read_text()) == summary
    assert set(summary["datasets"]) == set(FILES)
    for name, kind in FILES.items():
        rows = read_table(out / f"{name}.parquet", kind)
        entry = summary["datasets"][name]
        assert (entry["file"], entry["kind"], entry["rows"]) == (f"{name}.parquet", kind, len(rows))
        if name in SIZE_FIELD:
            assert len(rows) == getattr(TINY, SIZE_FIELD[name]), name
    for name in ("helpfulness_pairs", "safety_pairs"):
        rows = read_table(out / f"{name}.parquet", "preferences")
        stats = summary["datasets"][name]["stats"]
        assert Counter(r["rating"] for r in rows) == Counter(stats["ratings"])
        assert Counter(r["task"] for r in rows) == Counter(stats["tasks"])
        assert Counter(r["safety_label"] for r in rows if r["safety_label"]) == Counter(stats["safety_labels"])
    rl = read_table(out / "rl_prompts.parquet", "prompts")
    rl_tasks = summary["datasets"]["rl_prompts"]["stats"]["tasks"]
    assert Counter(f"{r['kind']}/{r['task']}" for r in rl) == Counter(rl_tasks)
    ev = read_table(out / "eval_prompts.parquet", "prompts")
    assert len(ev) == TINY.eval_helpful + TINY.eval_adversarial + TINY.eval_borderline
    assert summary["config"]["sft_dialogues"] == TINY.sft_dialogues and summary["seed"] == 3


def test_same_seed_same_bytes_other_seed_other_bytes(written, tmp_path):
    out, _, _ = written
    write_bundle(tmp_path / "again", TINY, seed=3)
    write_bundle(tmp_path / "other", TINY, seed=4)
    for name in [*FILES, "summary"]:
        suffix = ".json" if name == "summary" else ".parquet"
        first = (out / f"{name}{suffix}").read_bytes()
        assert (tmp_path / "again" / f"{name}{suffix}").read_bytes() == first, name
        assert (tmp_path / "other" / f"{name}{suffix}").read_bytes() != first, name


def test_cli_writes_the_bundle_and_prints_the_summary_table(tmp_path, capsys):
    main(["--out", str(tmp_path), "--seed", "1", "--scale", "0.01"])
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["pretrain_docs"] == 200 and summary["seed"] == 1
    for name, entry in summary["datasets"].items():
        assert f"{name}" in printed and str(entry["rows"]) in printed
    for word in ("ratings", "safety labels", "skipped_zero_gap", "dropped_unsafe_chosen", "arithmetic", "criminal"):
        assert word in printed, word


def test_scaling_keeps_held_out_sets_within_the_instance_space():
    big = BundleConfig().scaled(3.0)
    assert big.sft_dialogues == 12_000
    assert (big.eval_helpful, big.eval_adversarial, big.eval_borderline) == (360, 400, 270)
    with pytest.raises(ValueError, match="scale factor must be > 0"):
        BundleConfig().scaled(0)
    with pytest.raises(ValueError, match="BundleConfig.sft_noise must be in"):
        BundleConfig(sft_noise=1.5)
