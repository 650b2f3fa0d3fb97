"""Ghost Attention's choice of sampled answers, on the world's own constraint dialogues."""
from __future__ import annotations

import json
import random

from pipelines.stages.gatt import pick, seeds, training_dialogue
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
