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
