"""The evaluate stage's paired differences: per-prompt values, their differences and standard errors,
checked against a slow hand computation."""
from __future__ import annotations

import math

import pytest

from pipelines.stages.evaluate import comparisons, paired, per_prompt


def row(pid, kind, turn=1, helpfulness=0.0, violation=False, refusal=False, adherence=None):
    return {"prompt_id": pid, "kind": kind, "turn": turn, "helpfulness": helpfulness, "violation": violation,
            "refusal": refusal, "adherence": adherence}


def test_per_prompt_routes_each_result_to_its_metric():
    results = [row("h1", "helpful", helpfulness=0.7), row("a1", "adversarial", violation=True),
               row("b1", "borderline", refusal=True), row("d1", "multi_turn", turn=4, adherence=True),
               row("d1", "multi_turn", turn=3, adherence=False),  # turn 3 is not measured
               row("d2", "multi_turn", turn=4, adherence=None)]   # no constraint: no adherence
    v = per_prompt(results, {1, 4})
    assert v == {"helpfulness": {("h1", 1): 0.7}, "violation_rate": {("a1", 1): 1.0},
                 "false_refusal_rate": {("b1", 1): 1.0}, "adherence/turn4": {("d1", 4): 1.0}}


def test_paired_mean_and_standard_error_match_a_hand_computation():
    a = {"helpfulness": {("p1", 1): 1.0, ("p2", 1): 0.7, ("p3", 1): 0.0, ("p4", 1): 0.9}}
    b = {"helpfulness": {("p1", 1): 0.7, ("p2", 1): 0.7, ("p3", 1): 0.4, ("p5", 1): 0.1}}  # p4/p5 unpaired
    d = [0.3, 0.0, -0.4]
    m = sum(d) / 3
    se = math.sqrt(sum((x - m) ** 2 for x in d) / 2 / 3)
    out = paired(a, b)["helpfulness"]
    assert out["n"] == 3
    assert out["mean"] == pytest.approx(m, abs=1e-4) and out["se"] == pytest.approx(se, abs=1e-4)


def test_paired_se_is_smaller_than_the_combined_se_for_correlated_answers():
    # 100 prompts; the later model gains 0.3 on 20 of them and is otherwise identical
    base = {f"p{i}": (1.0 if i % 2 else 0.0) for i in range(100)}
    later = {p: v + (0.3 if i < 20 and v == 0.0 else 0.0) for i, (p, v) in enumerate(base.items())}
    a = {"helpfulness": {(p, 1): v for p, v in later.items()}}
    b = {"helpfulness": {(p, 1): v for p, v in base.items()}}
    out = paired(a, b)["helpfulness"]
    assert out["mean"] == pytest.approx(0.03, abs=1e-4)

    def se(xs):
        m = sum(xs) / len(xs)
        return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))
    combined = math.sqrt(se(list(later.values())) ** 2 + se(list(base.values())) ** 2)
    assert out["se"] < combined / 3


def test_paired_skips_metrics_one_side_lacks():
    assert paired({"helpfulness": {("p", 1): 1.0}}, {"violation_rate": {("q", 1): 0.0}}) == {}


def test_comparisons_are_consecutive_then_against_the_base():
    names = ["sft", "rs", "ppo", "gatt"]
    assert comparisons(names, "sft") == [("rs", "sft"), ("ppo", "rs"), ("gatt", "ppo"), ("ppo", "sft"), ("gatt", "sft")]
    assert comparisons(["rs", "ppo"], "sft") == [("ppo", "rs")]  # the base was not evaluated
