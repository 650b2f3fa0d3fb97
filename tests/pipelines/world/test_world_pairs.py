"""Preference pairs: rating levels from the oracle gap, safety labels, the drop rule, annotator noise."""

from __future__ import annotations

import json
import math
import random

import pytest

from pipelines.world import judge_turn, rating_from_gap, safety_label
from pipelines.world import pairs as pairs_module
from pipelines.world.helpful import sample_helpful
from pipelines.world.ladder import HOLLOW_COMPLIANCES
from pipelines.world.pairs import PairStats, make_pair, make_pairs, pair_score
from pipelines.world.safety import sample_adversarial, sample_borderline
from pipelines.world.tasks import PADDING_FACTOR
from pipelines.world.vocab import PLEASANTRIES


@pytest.mark.parametrize(("gap", "level"), [
    (2.0, "significantly_better"), (1.0, "significantly_better"), (0.75, "significantly_better"),
    (1.0 - 0.25, "significantly_better"), (0.7499, "better"), (0.5, "better"), (0.9 - 0.4, "better"),
    (0.4999, "slightly_better"), (0.3, "slightly_better"), (0.25, "slightly_better"),
    (0.2, "negligibly_better"), (0.1, "negligibly_better"), (1.0 - 0.9, "negligibly_better"),
])
def test_rating_from_gap(gap, level):
    assert rating_from_gap(gap) == level


@pytest.mark.parametrize("gap", [0.0, -0.3, 1e-12])
def test_rating_needs_a_positive_gap(gap):
    with pytest.raises(ValueError, match="positive score gap"):
        rating_from_gap(gap)


def test_safety_label_and_drop_rule():
    assert safety_label(chosen_unsafe=False, rejected_unsafe=True) == "chosen_safe_rejected_unsafe"
    assert safety_label(chosen_unsafe=False, rejected_unsafe=False) == "both_safe"
    assert safety_label(chosen_unsafe=True, rejected_unsafe=True) == "both_unsafe"
    assert safety_label(chosen_unsafe=True, rejected_unsafe=False) is None  # dropped (paper section 3.2.1)


class _AlwaysFlip(random.Random):
    """random() is 0: every flip check passes (the annotator always disagrees with the oracle)."""

    def random(self) -> float:
        return 0.0


def _task(sample, seed=0):
    return sample(random.Random(seed))


def test_an_unsafe_chosen_answer_is_dropped_and_counted(monkeypatch):
    monkeypatch.setattr(pairs_module, "draw_rungs", lambda task, rng: ("canonical", "compliance"))
    stats = PairStats()
    task = _task(sample_adversarial)
    assert make_pair(task, "safety", _AlwaysFlip(0), annotator_noise=1.0, stats=stats) is None
    assert stats.dropped_unsafe_chosen == 1
    row = make_pair(task, "safety", random.Random(0), annotator_noise=0.0, stats=stats)
    assert (row["chosen"], row["rejected"]) == (task.canonical, task.key["compliance"])
    assert row["rating"] == "significantly_better" and row["is_safety"] is True
    assert row["safety_label"] == "chosen_safe_rejected_unsafe"


def test_zero_gap_pairs_are_skipped_and_counted(monkeypatch):
    monkeypatch.setattr(pairs_module, "draw_rungs", lambda task, rng: ("wrong", "refusal"))  # both score 0
    stats = PairStats()
    assert make_pair(_task(sample_helpful), "helpfulness", random.Random(0), 0.0, stats) is None
    assert stats.skipped_zero_gap == 1


def _check_rows(rows, kind):
    for row in rows:
        meta = json.loads(row["meta"])
        key = meta["turns"][0]
        assert row["prompt"] == [{"role": "user", "content": row["prompt"][0]["content"]}]
        chosen, rejected = judge_turn(key, row["chosen"]), judge_turn(key, row["rejected"])
        gap = pair_score(chosen) - pair_score(rejected)
        assert (pair_score(chosen), pair_score(rejected)) == (meta["chosen_score"], meta["rejected_score"])
        assert gap < 0 if meta["flipped"] else gap > 0
        assert row["rating"] == rating_from_gap(abs(gap))
        if kind == "safety":
            assert row["safety_label"] == safety_label(chosen.violation, rejected.violation) is not None
        else:
            assert row["safety_label"] is None and not chosen.violation and not rejected.violation


def test_generated_pairs_follow_the_oracle_and_cover_every_rating_level():
    rows, stats = make_pairs(600, "helpfulness", sample_helpful, random.Random(1), 0.0, "h")
    _check_rows(rows, "helpfulness")
    assert set(stats.ratings) == {"significantly_better", "better", "slightly_better", "negligibly_better"}
    assert stats.skipped_zero_gap > 0 and stats.flipped == 0 and len({r["id"] for r in rows}) == 600

    def draw(r):
        return (sample_adversarial if r.random() < 0.7 else sample_borderline)(r)

    rows, stats = make_pairs(400, "safety", draw, random.Random(2), 0.0, "s")
    _check_rows(rows, "safety")
    assert set(stats.safety_labels) == {"chosen_safe_rejected_unsafe", "both_safe"}
    assert stats.dropped_unsafe_chosen == 0  # without annotator noise the oracle never prefers unsafe


def test_annotator_noise_flips_weak_preferences_more_and_its_unsafe_choices_are_dropped():
    rows, stats = make_pairs(3000, "helpfulness", sample_helpful, random.Random(3), 0.4, "h")
    _check_rows(rows, "helpfulness")
    flipped = {level: 0 for level in ("significantly_better", "better", "slightly_better", "negligibly_better")}
    for r in rows:
        flipped[r["rating"]] += json.loads(r["meta"])["flipped"]
    rate = {level: flipped[level] / stats.ratings[level] for level in flipped}
    assert rate["negligibly_better"] > rate["slightly_better"] > rate["better"] > rate["significantly_better"] > 0

    rows, stats = make_pairs(500, "safety", sample_adversarial, random.Random(4), 0.4, "s")
    _check_rows(rows, "safety")
    assert stats.dropped_unsafe_chosen > 0
    assert not any(r["safety_label"] is None for r in rows)


def test_the_annotator_is_bradley_terry_in_the_score_gap():
    # sigmoid(-gap / temperature), computed by hand
    assert pairs_module.flip_probability(0.1, 0.15) == pytest.approx(1 / (1 + math.exp(0.1 / 0.15)))
    assert pairs_module.flip_probability(0.1, 0.15) == pytest.approx(0.3392, abs=1e-4)
    assert pairs_module.flip_probability(0.8, 0.15) == pytest.approx(0.00481, abs=1e-5)
    assert pairs_module.flip_probability(1e-12, 0.15) == pytest.approx(0.5)
    assert pairs_module.flip_probability(0.5, 0.0) == 0.0 and pairs_module.flip_probability(2.0, 1e-6) < 1e-300
    gaps = [0.05, 0.1, 0.3, 0.6, 1.0, 2.0]
    probs = [pairs_module.flip_probability(g, 0.15) for g in gaps]
    assert probs == sorted(probs, reverse=True) and probs[-1] > 0


def test_annotate_labels_any_two_answers_like_the_ladder():
    task = _task(sample_helpful, seed=3)
    stats = PairStats()
    terse = f"{task.key['value_text']}."
    row = pairs_module.annotate(task.key, task.user, (terse, task.canonical), "helpfulness", random.Random(0), 0.0,
                                stats, {"source": "policy"})
    # canonical EXACT 1.0 over the bare value (the right value in other words) VALUE 0.7: gap 0.3
    assert (row["chosen"], row["rejected"], row["rating"]) == (task.canonical, terse, "slightly_better")
    meta = json.loads(row["meta"])
    assert meta["source"] == "policy" and meta["chosen_index"] == 1 and meta["gap"] == pytest.approx(0.3)
    assert row["prompt"] == [{"role": "user", "content": task.user}] and row["kind"] == "helpfulness"
    assert pairs_module.annotate(task.key, task.user, (terse, terse + " "), "helpfulness", random.Random(0), 0.0,
                                 stats) is None
    assert stats.skipped_zero_gap == 1 and stats.made == 0 and stats.ratings["slightly_better"] == 1
    with pytest.raises(ValueError, match="preference kind"):
        pairs_module.annotate(task.key, task.user, ("a", "b"), "style", random.Random(0), 0.0, stats)


def test_ladder_pairs_keep_their_rung_names():
    rows, _ = make_pairs(40, "helpfulness", sample_helpful, random.Random(1), 0.0, "h")
    for row in rows:
        meta = json.loads(row["meta"])
        assert "chosen_index" not in meta
        assert meta["chosen_rung"] != meta["rejected_rung"]
        assert not meta["chosen_rung"].startswith("padded_")  # no padded pairs without padded_fraction


def test_padded_pairs_are_decided_by_the_padding_alone():
    rows, stats = make_pairs(300, "helpfulness", sample_helpful, random.Random(2), 0.0, "h", padded_fraction=0.5)
    pad_rows = [r for r in rows if json.loads(r["meta"])["rejected_rung"].startswith("padded_")]
    assert 0.15 * len(rows) < len(pad_rows) < 0.5 * len(rows)  # ties (wrong vs padded wrong) are skipped
    for r in pad_rows:
        meta = json.loads(r["meta"])
        assert meta["rejected_rung"] == "padded_" + meta["chosen_rung"]
        assert r["rejected"].endswith(" " + r["chosen"]) and r["rejected"].split("!")[0] + "!" in PLEASANTRIES
        # the padded answer keeps PADDING_FACTOR (0.15) of the score: 1.0 vs 0.15 and 0.9 vs 0.135 are
        # "significantly better", 0.7 vs 0.105 (other words) "better", a close value's partial credit less
        assert meta["rejected_score"] == pytest.approx(PADDING_FACTOR * meta["chosen_score"], abs=1e-4)
        assert r["rating"] == rating_from_gap(meta["chosen_score"] - meta["rejected_score"]), meta
        if meta["chosen_rung"] in ("canonical", "format"):
            assert r["rating"] == "significantly_better"
        if meta["chosen_rung"] == "alt":
            assert r["rating"] == "better"
    # the padding never wins with a noiseless annotator
    assert not [r for r in rows if json.loads(r["meta"])["chosen_rung"].startswith("padded_")]


def test_value_in_reads_the_claimed_value_of_canonical_phrased_answers_in_every_family():
    from pipelines.world.helpful import FAMILY_NAMES, family
    from pipelines.world.ladder import value_in
    rng = random.Random(5)
    for name in FAMILY_NAMES:
        for _ in range(20):
            task = sample_helpful(rng, name)
            assert value_in(task, task.canonical) == task.key["value_text"], task.canonical
            close = family(name).close(task.key, rng)
            value = value_in(task, close)
            assert value is not None and value != task.key["value_text"], (task.canonical, close)
        assert value_in(task, "Something else entirely.") is None


def test_balanced_pairs_put_each_surface_form_on_both_sides_and_still_follow_the_oracle():
    from pipelines.world.tasks import VALUE
    rows, _ = make_pairs(1500, "helpfulness", sample_helpful, random.Random(3), 0.0, "h", balance_forms=True)
    plain, _ = make_pairs(1500, "helpfulness", sample_helpful, random.Random(3), 0.0, "h")

    def sides(rs):
        out = {}
        for r in rs:
            meta = json.loads(r["meta"])
            for side in ("chosen", "rejected"):
                rung = meta[f"{side}_rung"]
                form = rung.split("@")[1] if "@" in rung else rung if rung in ("format", "alt") else "canonical"
                out.setdefault(form, {"chosen": 0, "rejected": 0})[side] += 1
        return out

    # without balancing the canonical phrasing is rejected far more often than the other forms
    s, p = sides(rows), sides(plain)
    share = lambda d, f: d[f]["rejected"] / (d[f]["chosen"] + d[f]["rejected"])  # noqa: E731
    # (measured: rejected shares canonical 0.59, alt 0.41, format 0.21 -> 0.48, 0.60, 0.44; a right
    # answer in the alt form still loses to one in canonical form, which is a real preference)
    spread = lambda d: max(share(d, f) for f in d) - min(share(d, f) for f in d)  # noqa: E731
    assert share(p, "canonical") - share(p, "format") > 0.3 and spread(p) > 0.3
    assert spread(s) < 0.2
    formed = [r for r in rows if "@" in json.loads(r["meta"])["rejected_rung"]]
    assert len(formed) > 150
    for r in formed:  # the oracle still decides: the stored scores are its judgments
        meta = json.loads(r["meta"])
        assert judge_turn(meta["turns"][0], r["rejected"]).helpfulness == meta["rejected_score"]
        assert meta["chosen_score"] > meta["rejected_score"]
    # a wrong value stays wrong in another form (another instance's value can coincide with the right one)
    assert sum(json.loads(r["meta"])["rejected_score"] < VALUE for r in formed) > 0.9 * len(formed)
    assert any(json.loads(r["meta"])["rejected_rung"] == "other_instance@alt" for r in rows)


def test_safety_pairs_reject_the_hollow_agreement_below_every_safe_answer():
    # "Sure." alone goes along with the request without saying how: a violation, which a safety RM must
    # rank below refusals (session 10: one that had never seen it preferred it, and distillation taught it)
    rows, _ = make_pairs(600, "safety", sample_adversarial, random.Random(3), 0.0, "s")
    hollow = [r for r in rows if "hollow_compliance" in (json.loads(r["meta"])["chosen_rung"],
                                                         json.loads(r["meta"])["rejected_rung"])]
    assert len(hollow) > 10
    for r in hollow:
        meta = json.loads(r["meta"])
        assert meta["rejected_rung"] == "hollow_compliance" and r["rejected"] in HOLLOW_COMPLIANCES, meta
        # against a compliance it ties at 0 and is skipped: every kept pair has a safe answer chosen
        assert r["safety_label"] == "chosen_safe_rejected_unsafe", meta
