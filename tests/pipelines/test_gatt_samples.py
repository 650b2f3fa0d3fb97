"""Ghost Attention's choice of sampled answers, on the world's own constraint dialogues."""
from __future__ import annotations

import json
import random

import pytest
import ray

from actors.config import RewardConfig, ScorerConfig
from actors.reward import start_reward_actor
from pipelines.common import Completion
from pipelines.config import GAttConfig
from pipelines.stages import gatt
from pipelines.stages.gatt import pick, seeds, training_dialogue
from pipelines.world.helpful import sample_helpful
from pipelines.world.safety import sample_adversarial
from pipelines.world import BundleConfig, generate_dataset
from pipelines.world.constraints import apply_constraints, check_constraints


def test_pick_takes_the_first_sample_that_keeps_every_constraint():
    cons = [{"kind": "end_word", "value": "Over", "text": "End word: Over."},
            {"kind": "persona", "value": "Lady Quill", "text": "Persona: Lady Quill."}]
    good = apply_constraints("apple has 5 letters.", cons)
    half = apply_constraints("apple has 5 letters.", cons[:1])  # end word but no signature
    assert all(check_constraints(good, cons).values()) and not all(check_constraints(half, cons).values())
    assert pick(["", half, good, "x"], cons, keep_adherent=True) == good
    assert pick(["", half], cons, keep_adherent=True) is None
    assert pick(["", half, good], cons, keep_adherent=False) == half  # without the check: first non-empty
    assert pick(["  ", ""], [], keep_adherent=True) is None
    assert pick(["a", "b"], [], keep_adherent=True) == "a"  # no constraint: nothing to break


def test_seeds_carry_the_dialogue_constraints_and_build_the_training_dialogue():
    rows = generate_dataset("gatt_dialogues", BundleConfig().scaled(0.05), 2).rows
    out = seeds(rows, max_turns=8, n=10, rng=random.Random(0))
    assert out
    by_id = {r["id"]: r for r in rows}
    for d in out:
        meta = json.loads(by_id[d["id"]]["meta"])
        assert d["constraints"] == meta["constraints"] and d["constraints"]
        assert 2 <= len(d["users"]) <= 8
        answers = [apply_constraints("ok.", d["constraints"]) for _ in d["users"]]
        msgs = training_dialogue(d, answers)
        assert msgs[0] == {"role": "system", "content": d["instruction"]}
        assert [m["content"] for m in msgs if m["role"] == "user"] == d["users"]  # instruction only in the system turn


def test_depth_cuts_give_one_example_per_turn_from_the_second():
    from pipelines.stages.gatt import depth_cuts
    d = {"instruction": "Always answer in upper case.", "users": ["u1", "u2", "u3", "u4"]}
    msgs = training_dialogue(d, ["A1", "A2", "A3", "A4"])
    cuts = depth_cuts([("d0", msgs)])
    assert [i for i, _ in cuts] == ["d0/t2", "d0/t3", "d0/t4"]
    for t, (_, m) in zip((2, 3, 4), cuts):
        assert len(m) == 1 + 2 * t and m[-1] == {"role": "assistant", "content": f"A{t}"}
        assert m[0]["role"] == "system" and [x["content"] for x in m if x["role"] == "user"] == d["users"][:t]
    assert depth_cuts([("d1", training_dialogue(d | {"users": ["u1"]}, ["A1"]))]) == []  # one turn: nothing at depth 2
    from_first = depth_cuts([("d0", msgs)], min_depth=1)  # the instruction's own turn as well
    assert [i for i, _ in from_first] == ["d0/t1", "d0/t2", "d0/t3", "d0/t4"] and len(from_first[0][1]) == 3
    try:
        depth_cuts([("bad", msgs[1:])])
    except ValueError as e:
        assert "bad" in str(e)
    else:
        raise AssertionError("a dialogue without its system turn must be rejected")


def test_usable_turns_and_full_seeds():
    from pipelines.stages.gatt import usable_turns
    assert usable_turns(["a", "b", None, "d"]) == 2 and usable_turns(["a"]) == 1 and usable_turns([None]) == 0
    assert usable_turns([]) == 0
    rows = generate_dataset("gatt_dialogues", BundleConfig().scaled(0.05), 2).rows
    full = seeds(rows, max_turns=8, n=50, rng=random.Random(0), full=True)
    users = {r["id"]: sum(m["role"] == "user" for m in r["messages"]) for r in rows}
    assert full and all(len(d["users"]) == min(8, users[d["id"]]) for d in full)


# --- IS_SAFETY turns: the adherent sample the reward prefers (a real reward actor scoring with the oracle) ---

@pytest.fixture(scope="module")
def oracle_reward_actor():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False)
    rm = start_reward_actor(RewardConfig(scorer=ScorerConfig(
        kind="function", target="pipelines.oracle_reward:world_oracle_reward")))
    yield rm
    ray.kill(rm)
    if started:
        ray.shutdown()


def test_safety_turns_take_the_adherent_sample_the_reward_prefers(monkeypatch, oracle_reward_actor):
    adv, helpful = sample_adversarial(random.Random(0)), sample_helpful(random.Random(1))
    cons = [{"kind": "end_word", "value": "Over", "text": "End word: Over."}]
    comply = apply_constraints(adv.key["compliance"], cons)
    refuse = apply_constraints(adv.canonical, cons)
    padded = apply_constraints("Happy to help! " + helpful.canonical, cons)
    right = apply_constraints(helpful.canonical, cons)
    samples = {helpful.user: [padded, right], adv.user: [adv.canonical, comply, refuse]}  # 1st breaks the end word
    dialog = {"id": "d0", "instruction": "End every answer with the word Over.", "users": [helpful.user, adv.user],
              "constraints": cons, "keys": [helpful.key, adv.key], "safety": [False, True]}

    def fixed_samples(pool, tok, prompts, *, n, **kw):
        return [[Completion(i, k, [1, 2], [3], [0.0], text, 0) for k, text in enumerate(samples[p[-1]["content"]])]
                for i, p in enumerate(prompts)]

    monkeypatch.setattr(gatt, "complete", fixed_samples)
    gc = GAttConfig(samples=3)
    # without a reward actor: the first adherent sample, here the compliance
    assert gatt.sample_answers(None, None, [dialog], gc, 0) == ([[padded, comply]], 0)
    # with one: the safety turn takes the refusal; the helpful turn is not scored (the first adherent stays)
    assert gatt.sample_answers(None, None, [dialog], gc, 0, oracle_reward_actor) == ([[padded, refuse]], 1)
    # a safety turn with a single adherent sample is not scored
    samples[adv.user] = [adv.canonical, comply]
    assert gatt.sample_answers(None, None, [dialog], gc, 0, oracle_reward_actor) == ([[padded, comply]], 0)


def test_choose_likelihood_takes_the_usable_sample_with_the_highest_mean_logprob(monkeypatch):
    cons = [{"kind": "end_word", "value": "Over", "text": "End word: Over."}]
    a, b, c = (apply_constraints(t, cons) for t in ("pen has 3 letters.", "pen has 4 letters.", "cup has 3 letters."))
    # (text, per-token log-probs): the likeliest sample overall breaks the instruction; of the usable ones
    # b has the higher mean (-0.2) though the lower sum (-1.0 against -0.9 for the 3-token a)
    samples = [("pen has 3 letters.", [-0.01]), (a, [-0.3, -0.3, -0.3]), (b, [-0.2] * 5), (c, [-0.5, -0.5])]
    g = [Completion(0, k, [1], [3] * len(lp), lp, text, 0) for k, (text, lp) in enumerate(samples)]
    found = gatt.usable([x.text for x in g], cons, keep_adherent=True)
    assert found == [1, 2, 3]
    assert gatt.choose_usable(g, found, "first") == 1
    assert gatt.choose_usable(g, found, "likelihood") == 2
    assert gatt.mean_logprob(Completion(0, 0, [1], [], [], "", 0)) == float("-inf")
    with pytest.raises(ValueError, match="gatt.choose: expected one of"):
        gatt.choose_usable(g, found, "best")

    monkeypatch.setattr(gatt, "complete", lambda pool, tok, prompts, *, n, **kw: [g for _ in prompts])
    dialog = {"id": "d0", "instruction": "End word: Over.", "users": ["u1", "u2"], "constraints": cons,
              "keys": [{}, {}], "safety": [False, False]}
    assert gatt.sample_answers(None, None, [dialog], GAttConfig(samples=4), 0) == ([[a, a]], 0)
    assert gatt.sample_answers(None, None, [dialog], GAttConfig(samples=4, choose="likelihood"), 0) == ([[b, b]], 0)


def test_seeds_tag_the_safety_turns_from_the_rows_keys():
    rows = generate_dataset("gatt_dialogues", BundleConfig(gatt_adversarial_fraction=0.5).scaled(0.05), 2).rows
    out = seeds(rows, max_turns=8, n=50, rng=random.Random(0), full=True)
    by_id = {r["id"]: json.loads(r["meta"])["turns"] for r in rows}
    tags = [t for d in out for t in d["safety"]]
    assert any(tags) and not all(tags)
    for d in out:
        assert d["safety"] == [k["kind"] == "adversarial" for k in by_id[d["id"]][: len(d["users"])]]
        assert d["keys"] == by_id[d["id"]][: len(d["users"])]
