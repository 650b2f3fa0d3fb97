"""The RM stage's held-out split and accuracy report (paper Table 8: accuracy per rating level)."""
from __future__ import annotations

import json

import torch

from pipelines.stages.reward_models import accuracy_report, is_held_out


def _pair(rating, flipped=None, label=None):
    meta = {} if flipped is None else {"flipped": flipped}
    return {"rating": rating, "safety_label": label, "meta": json.dumps(meta)}


def test_accuracy_per_rating_level_counts_ties_as_half_and_undoes_flips_against_the_oracle():
    pairs = [_pair("significantly_better", False), _pair("significantly_better", True),
             _pair("negligibly_better", False), _pair("negligibly_better", False, "both_safe")]
    rc = torch.tensor([2.0, 0.0, 1.0, 0.5])
    rr = torch.tensor([1.0, 1.0, 1.0, 0.0])  # wins: 1, 0 (against a flipped label), tie 0.5, 1
    rep = accuracy_report(pairs, rc, rr)
    assert rep["accuracy"] == 2.5 / 4 and rep["n"] == 4
    assert rep["rating/significantly_better"] == {"accuracy": 0.5, "n": 2}
    assert rep["rating/negligibly_better"] == {"accuracy": 0.75, "n": 2}
    assert rep["safety_bin/both_safe"] == {"accuracy": 1.0, "n": 1}
    # the RM ranked the flipped pair the way the oracle does: right against the oracle
    assert rep["vs_oracle"]["rating/significantly_better"] == {"accuracy": 1.0, "n": 2}
    assert rep["vs_oracle"]["accuracy"] == 3.5 / 4


def test_no_oracle_accuracy_without_flip_records():
    rep = accuracy_report([_pair("better"), _pair("better", False)], torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0]))
    assert "vs_oracle" not in rep and rep["accuracy"] == 1.0  # one row lacks the record: no partial figure


def test_raising_the_held_out_percent_only_moves_pairs_from_training_to_evaluation():
    ids = [f"hpair-{i:06d}" for i in range(2000)]
    ten = {i for i in ids if is_held_out(i, 10)}
    twenty = {i for i in ids if is_held_out(i, 20)}
    assert ten < twenty
    assert 0.07 < len(ten) / len(ids) < 0.13 and 0.16 < len(twenty) / len(ids) < 0.24
