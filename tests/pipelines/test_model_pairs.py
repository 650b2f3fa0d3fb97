"""Preference pairs of the policy's own answers (pipelines.model_pairs): which pair is kept, which prompts.

The sampling itself runs on a real vLLM pool in the smoke pipeline (test_llama2_smoke.py checks the
written pairs against the oracle); these tests pin the choice of pair and the source prompts.
"""
from __future__ import annotations

import json
import random

import pytest

from pipelines.model_pairs import origin, pick_pair, source_prompts
from pipelines.world.helpful import sample_helpful
from pipelines.world.oracle import judge_turn
from pipelines.world.pairs import pair_score


def _task(seed=0):
    return sample_helpful(random.Random(seed))


def test_pick_pair_keeps_only_distinct_answers_whose_oracle_scores_differ():
    task = _task(3)
    right, also_right, wrong = task.canonical, task.canonical + " ", "I cannot help with that."
    scores = [pair_score(judge_turn(task.key, a)) for a in (right, also_right, wrong)]
    assert scores[0] == scores[1] > scores[2]
    picks = {pick_pair([right, also_right, wrong], task.key, random.Random(s)) for s in range(40)}
    assert picks == {(0, 2), (1, 2)}  # never the two right answers (same score, same text)
    assert pick_pair([right, right + " ", right], task.key, random.Random(0)) is None
    assert pick_pair([wrong, "Something else."], task.key, random.Random(0)) is None  # both score 0
    assert pick_pair([right, "", "  "], task.key, random.Random(0)) is None  # empty answers never enter a pair


def _row(i, task, meta=None, prompt=None):
    return {"id": f"h{i}", "prompt": prompt or [{"role": "user", "content": task.user}], "chosen": "a",
            "rejected": "b", "rating": "better", "safety_label": None, "kind": "helpfulness", "is_safety": False,
            "task": task.task, "meta": meta if meta is not None else json.dumps({"turns": [task.key]})}


def test_source_prompts_are_distinct_single_turn_prompts_with_their_answer_key():
    a, b = _task(1), _task(2)
    rows = [_row(0, a), _row(1, b), _row(2, a),  # a's prompt again: kept once
            _row(3, b, prompt=[{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
                               {"role": "user", "content": b.user}])]  # multi-turn: skipped
    out = source_prompts(rows, "pairs.parquet")
    assert [s["id"] for s in out] == ["h0", "h1"]
    assert out[0]["key"] == a.key and out[1]["prompt"] == rows[1]["prompt"]


def test_source_prompts_without_an_answer_key_name_the_file_row_and_the_way_out():
    rows = [_row(0, _task(1)), _row(7, _task(2), meta=json.dumps({"source": "hh"}))]
    with pytest.raises(ValueError, match=r"pairs.parquet row 1 \(id 'h7'\).*answer key.*model_pairs.prompts=0"):
        source_prompts(rows, "pairs.parquet")


def test_origin_tells_model_pairs_from_ladder_pairs():
    assert origin({"meta": json.dumps({"origin": "model"})}) == "model"
    assert origin({"meta": json.dumps({"turns": []})}) == "ladder"
    assert origin({"meta": "not json"}) == "ladder"


class _CannedPolicy:
    """Stands in for the generator pool with fixed answers per prompt (a trained policy cannot exist in a
    unit test; the smoke pipeline runs `collect` on a real vLLM pool)."""

    def __init__(self, tok, answers):
        self.tok, self.answers, self.calls = tok, answers, []

    def generate(self, token_prompts, sampling, seed):
        from types import SimpleNamespace

        self.calls.append((sampling.n, sampling.temperature))
        offset = sum(n for n, _ in self.calls[:-1])
        out = []
        for p in range(len(token_prompts)):
            for s in range(sampling.n):
                ids = self.tok.encode(self.answers[p][offset + s], bos=False, eos=True)
                out.append(SimpleNamespace(prompt_index=p, sample_index=s, token_ids=ids, logprobs=[0.0] * len(ids),
                                           weight_version=0))
        return out


def test_collect_pairs_one_differing_pair_per_prompt_and_splits_by_the_source_pair(tmp_path):
    from model.tokenizer import train_tokenizer
    from pipelines.model_pairs import collect

    tasks = [_task(s) for s in range(6)]
    corpus = [t.user for t in tasks] + [t.canonical for t in tasks] + ["I cannot help with that."] * 5
    tok = train_tokenizer(corpus * 20, tmp_path, vocab_size=400)
    wrong = "I cannot help with that."
    answers = [[t.canonical, wrong, t.canonical, t.canonical] for t in tasks[:5]] + [[wrong] * 4]  # last: no pair
    sources = [{"id": f"hpair-{i:06d}", "prompt": [{"role": "user", "content": t.user}], "key": t.key}
               for i, t in enumerate(tasks)]
    pool = _CannedPolicy(tok, answers)
    held = {"hpair-000001", "hpair-000003"}
    train, held_out, rep = collect(pool, tok, sources, kind="helpfulness", samples=4, temperatures=[0.7, 1.0],
                                   max_new_tokens=32, max_prompt_len=128, annotator_noise=0.0, seed=0,
                                   is_held_out=lambda pair_id: pair_id in held)
    assert pool.calls == [(2, 0.7), (2, 1.0)]  # samples split evenly over the temperatures
    assert sorted(r["id"] for r in held_out) == ["hpair-000001-model", "hpair-000003-model"]
    assert len(train) == 3 and rep["no_differing_pair"] == 1 and rep["made"] == 5
    for row in train + held_out:
        src = sources[int(row["id"][6:12])]
        assert (row["chosen"], row["rejected"]) == (src["key"]["canonical"], wrong)  # the oracle decides (no noise)
        assert row["rating"] == "significantly_better" and row["prompt"] == src["prompt"]
        meta = json.loads(row["meta"])
        assert meta["origin"] == "model" and meta["source_id"] == src["id"] and 1 in meta["sample_indices"]
