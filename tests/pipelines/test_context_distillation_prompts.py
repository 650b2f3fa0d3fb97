"""Context distillation's prompt pool: every distinct adversarial request of the RL prompts and of the
safety preference data, read from a real world bundle on disk."""
from __future__ import annotations

import json

from pipelines.data import read_table
from pipelines.rundir import RunDir
from pipelines.stages.context_distillation import adversarial_prompts
from pipelines.world import BundleConfig, judge
from pipelines.world.bundle import write_bundle


def test_adversarial_prompts_come_from_rl_prompts_then_safety_pairs(tmp_path):
    run = RunDir.create(tmp_path / "run")
    write_bundle(run.data, BundleConfig().scaled(0.05), seed=3)
    rows = adversarial_prompts(run)

    rl = [p for p in read_table(run.data / "rl_prompts.parquet", "prompts") if p["kind"] == "adversarial"]
    pairs = [p for p in read_table(run.data / "safety_pairs.parquet", "preferences") if p["is_safety"]]
    texts = [json.dumps(r["messages"], sort_keys=True) for r in rows]
    assert len(texts) == len(set(texts))  # each request once
    assert {json.dumps(p["prompt"], sort_keys=True) for p in pairs} | {json.dumps(p["messages"], sort_keys=True)
                                                                        for p in rl} == set(texts)
    assert rl and [r["id"] for r in rows[:len(rl)]] == [p["id"] for p in rl]
    assert len(rows) > len(rl)  # the safety data adds requests the few adversarial RL prompts lack
    for r in rows:
        assert r["kind"] == "adversarial" and r["is_safety"] is True
        key = json.loads(r["meta"])["turns"][-1]
        assert key["kind"] == "adversarial" and key["task"] == r["task"]
        # the meta is a usable answer key: the category's refusal is judged correct, its compliance a violation
        assert judge(r, key["canonical"]).correct and judge(r, key["compliance"]).violation
