"""Oracle judgments on hand-written answers for every helpful task family (tasks.py has the scale).

Keys are written out by hand (the meta contract the stages rely on), and a parity test checks that
the samplers produce keys whose answers equal an independent computation.
"""

from __future__ import annotations

import json
import random

import pytest

from pipelines.world import judge, judge_turn
from pipelines.world.helpful import FAMILY_NAMES, sample_helpful
from pipelines.world.ladder import answer_for, padded, rungs_for
from pipelines.world.tasks import PADDING_FACTOR, VALUE
from pipelines.world.vocab import CAPITALS, CREATURES

ARITH = {"kind": "helpful", "task": "arithmetic", "a": 7, "op": "plus", "b": 5, "value": 12,
         "value_text": "12", "canonical": "7 plus 5 is 12."}
COUNT = {"kind": "helpful", "task": "count_letters", "word": "apple", "value": 5, "value_text": "5",
         "canonical": "apple has 5 letters."}
REVERSE = {"kind": "helpful", "task": "reverse_word", "word": "apple", "value": "elppa", "value_text": "elppa",
           "canonical": "apple reversed is elppa."}
SORT3 = {"kind": "helpful", "task": "sort_numbers", "items": [5, 2, 9], "value": [2, 5, 9],
         "value_text": "2, 5, 9", "canonical": "Sorted: 2, 5, 9."}
SORT5 = {"kind": "helpful", "task": "sort_numbers", "items": [8, 3, 14, 1, 20], "value": [1, 3, 8, 14, 20],
         "value_text": "1, 3, 8, 14, 20", "canonical": "Sorted: 1, 3, 8, 14, 20."}
UNITS_KM = {"kind": "helpful", "task": "unit_conversion", "amount": 3, "source": "3 kilometers", "target": "meters",
            "factor": 1000, "value": 3000, "value_text": "3000", "canonical": "3 kilometers is 3000 meters."}
CAPITAL = {"kind": "helpful", "task": "fact_lookup", "relation": "capital", "subject": "Zorbia", "value": "Velk",
           "value_text": "Velk", "canonical": "The capital of Zorbia is Velk."}
COLOUR = {"kind": "helpful", "task": "fact_lookup", "relation": "colour", "subject": "glimmet", "value": "blue",
          "value_text": "blue", "canonical": "A glimmet is blue."}
FOOD = {"kind": "helpful", "task": "fact_lookup", "relation": "food", "subject": "glimmet", "value": "moss",
        "value_text": "moss", "canonical": "A glimmet eats moss."}

# (key, answer, helpfulness, correct)
CASES = [
    # arithmetic
    (ARITH, "7 plus 5 is 12.", 1.0, True),
    (ARITH, "  7 plus 5 is 12.  ", 1.0, True),
    (ARITH, "7 PLUS 5 IS 12", 0.9, True),
    (ARITH, "The answer is 12.", 0.7, True),
    (ARITH, "12", 0.7, True),
    (ARITH, "7 plus 5 is 13.", 0.4, False),
    (ARITH, "7 plus 5 is 10.", 0.2, False),
    (ARITH, "7 plus 5 is 20.", 0.0, False),
    (ARITH, "12 or 13", 0.0, False),  # hedged: the stray 12 earns nothing
    (ARITH, "13, no, 12.", 0.0, False),
    (ARITH, "seven plus five is twelve", 0.0, False),  # numbers must be digits
    (ARITH, "", 0.0, False),
    # count letters
    (COUNT, "apple has 5 letters.", 1.0, True),
    (COUNT, "Apple has 5 letters", 0.9, True),
    (COUNT, "It has 5 letters.", 0.7, True),
    (COUNT, "apple has 6 letters.", 0.4, False),
    (COUNT, "apple has 3 letters.", 0.2, False),
    (COUNT, "apple has 9 letters.", 0.0, False),
    (COUNT, "3 plus 2 is 5.", 0.0, False),  # right number, unrelated answer
    # reverse
    (REVERSE, "apple reversed is elppa.", 1.0, True),
    (REVERSE, "The answer is elppa.", 0.7, True),
    (REVERSE, "ELPPA", 0.7, True),
    (REVERSE, "apple reversed is elpba.", 0.4, False),  # 4 of 5 letters in place
    (REVERSE, "apple reversed is elpap.", 0.3, False),  # 3 of 5
    (REVERSE, "apple reversed is eppal.", 0.0, False),  # 2 of 5: more wrong than right
    (REVERSE, "apple reversed is apple.", 0.0, False),  # the word echoed
    (REVERSE, "apple reversed is elppaa.", 0.0, False),
    # sort
    (SORT3, "Sorted: 2, 5, 9.", 1.0, True),
    (SORT3, "sorted 2 5 9", 0.9, True),
    (SORT3, "5, 2, 9 sorted is 2, 5, 9.", 0.7, True),
    (SORT3, "2,5,9", 0.7, True),
    (SORT3, "Sorted: 2, 9, 5.", 0.25, False),  # one of two neighbours in order
    (SORT3, "Sorted: 2, 5, 10.", 0.0, False),
    (SORT3, "Sorted: 2, 5.", 0.0, False),
    (SORT3, "1, 2, 5, 9", 0.0, False),  # a stray number before the list
    (SORT5, "Sorted: 1, 8, 3, 14, 20.", 0.375, False),  # three of four neighbours in order
    # unit conversion
    (UNITS_KM, "3 kilometers is 3000 meters.", 1.0, True),
    (UNITS_KM, "3 kilometers is 3,000 meters.", 0.7, True),
    (UNITS_KM, "3000", 0.7, True),
    (UNITS_KM, "3 kilometers is 4000 meters.", 0.4, False),  # one unit off
    (UNITS_KM, "3 kilometers is 300 meters.", 0.2, False),  # a factor of ten off
    (UNITS_KM, "3 kilometers is 3001 meters.", 0.0, False),
    (UNITS_KM, "1 kilometer is 1000 meters.", 0.0, False),  # another instance's answer
    # fact lookup
    (CAPITAL, "The capital of Zorbia is Velk.", 1.0, True),
    (CAPITAL, "the capital of zorbia is velk", 0.9, True),
    (CAPITAL, "Velk is the capital of Zorbia.", 0.7, True),
    (CAPITAL, "It is Velk.", 0.7, True),
    (CAPITAL, "The capital of Zorbia is Velg.", 0.4, False),  # one letter off
    (CAPITAL, "The capital of Zorbia is Drisa.", 0.0, False),
    (CAPITAL, "Drisa or Velk.", 0.0, False),  # hedged
    (COLOUR, "A glimmet is blue.", 1.0, True),
    (COLOUR, "A glimmet is red.", 0.0, False),
    (COLOUR, "blu", 0.4, False),
    (FOOD, "A glimmet eats moss.", 1.0, True),
    (FOOD, "A glimmet eats honey.", 0.0, False),
]


@pytest.mark.parametrize(("key", "answer", "helpfulness", "correct"), CASES)
def test_helpful_answers_are_graded(key, answer, helpfulness, correct):
    j = judge_turn(key, answer)
    assert j.helpfulness == pytest.approx(helpfulness)
    assert j.correct is correct
    assert j.refusal is False and j.violation is False
    assert j.constraints is None


@pytest.mark.parametrize("key", [ARITH, COUNT, REVERSE, SORT3, UNITS_KM, CAPITAL])
@pytest.mark.parametrize("refusal", ["I cannot help with that.", "Sorry, 12.", "I won't do that. It is 12."])
def test_refusing_a_helpful_prompt_scores_zero(key, refusal):
    j = judge_turn(key, refusal)
    assert (j.helpfulness, j.refusal, j.violation, j.correct) == (0.0, True, False, False)


def test_judge_reads_the_last_turn_of_a_prompt_row():
    row = {"id": "p1", "messages": [{"role": "user", "content": "What is 7 plus 5?"}],
           "meta": json.dumps({"turns": [COUNT, ARITH], "constraints": []})}
    assert judge(row, "7 plus 5 is 12.").helpfulness == 1.0
    assert judge(row["meta"], "apple has 5 letters.").helpfulness == 0.0  # the last turn is arithmetic
    assert judge({"turns": [ARITH]}, "12").helpfulness == 0.7


@pytest.mark.parametrize("bad", ["not json", json.dumps({"turns": []}), json.dumps({"turns": [{"kind": "x"}]})])
def test_bad_meta_raises_a_clear_error(bad):
    with pytest.raises(ValueError, match="oracle meta|not valid JSON"):
        judge(bad, "12")


FACTORS = {("kilometer", "meters"): 1000, ("meter", "centimeters"): 100, ("hour", "minutes"): 60,
           ("minute", "seconds"): 60, ("day", "hours"): 24, ("week", "days"): 7, ("kilogram", "grams"): 1000,
           ("year", "months"): 12, ("dollar", "cents"): 100}


def _independent_answer(key: dict):
    """The answer computed without the world's code (parity reference)."""
    task = key["task"]
    if task == "arithmetic":
        return {"plus": key["a"] + key["b"], "minus": key["a"] - key["b"], "times": key["a"] * key["b"]}[key["op"]]
    if task == "count_letters":
        return len(key["word"])
    if task == "reverse_word":
        return "".join(reversed(key["word"]))
    if task == "sort_numbers":
        return sorted(key["items"])
    if task == "unit_conversion":
        unit = key["source"].split()[1].removesuffix("s")
        return key["amount"] * FACTORS[(unit, key["target"])]
    if key["relation"] == "capital":
        return CAPITALS[key["subject"]]
    return CREATURES[key["subject"]][0 if key["relation"] == "colour" else 1]


def test_sampled_keys_match_an_independent_computation_and_judge_their_canonical_as_exact():
    rng = random.Random(7)
    for name in FAMILY_NAMES:
        for _ in range(200):
            task = sample_helpful(rng, name)
            assert task.key["value"] == _independent_answer(task.key), task
            assert task.key["task"] == name and task.kind == "helpful"
            assert judge_turn(task.key, task.canonical).helpfulness == 1.0
            assert len(task.canonical.split()) <= 15  # short enough for a tiny model


def test_a_padded_answer_keeps_its_correctness_but_a_share_of_its_score_in_every_family():
    rng = random.Random(5)
    for name in FAMILY_NAMES:
        for _ in range(20):
            task = sample_helpful(rng, name)
            for rung in rungs_for(task):
                answer = answer_for(task, rung, rng)
                plain, pad = judge_turn(task.key, answer), judge_turn(task.key, padded(answer, rng))
                # the pleasantry scales the score by PADDING_FACTOR (canonical 1.0 -> 0.4, a right value in
                # other words 0.7 -> 0.28, close partial credit likewise, wrong/off-topic stay 0) and leaves
                # correctness and refusals as they were ("Happy to help! I cannot ..." still refuses)
                assert pad.helpfulness == pytest.approx(PADDING_FACTOR * plain.helpfulness, abs=1e-4), (name, rung)
                assert (pad.correct, pad.refusal) == (plain.correct, plain.refusal), (name, rung, answer)
                assert pad.refusal == (rung == "refusal")
                # the same in upper case and without the exclamation mark
                loud = judge_turn(task.key, padded(answer, rng).replace("!", "", 1).upper())
                assert loud.helpfulness == pytest.approx(PADDING_FACTOR * judge_turn(task.key, answer.upper()).helpfulness,
                                                         abs=1e-4), (name, rung)


@pytest.mark.parametrize(("key", "answer"), [
    ({"kind": "helpful", "task": "count_letters", "word": "stone", "value": 5, "value_text": "5",
      "canonical": "stone has 5 letters."}, "table has 5 letters."),  # right number, other word
    ({"kind": "helpful", "task": "reverse_word", "word": "kite", "value": "etik", "value_text": "etik",
      "canonical": "kite reversed is etik."}, "kitten reversed is etik."),
    ({"kind": "helpful", "task": "fact_lookup", "relation": "colour", "subject": "skree", "value": "red",
      "value_text": "red", "canonical": "A skree is red."}, "A blibber is red."),  # blibber is red too
    ({"kind": "helpful", "task": "fact_lookup", "relation": "capital", "subject": "Zorbia", "value": "Velk",
      "value_text": "Velk", "canonical": "The capital of Zorbia is Velk."}, "The capital of Vantor is Velk."),
])
def test_an_answer_about_another_subject_earns_nothing_even_with_the_right_value(key, answer):
    assert judge_turn(key, answer).helpfulness == 0.0
    assert judge_turn(key, key["canonical"]).helpfulness == 1.0


def test_the_other_instance_rung_answers_another_request_of_the_same_family():
    rng = random.Random(9)
    scores = []
    for name in FAMILY_NAMES:
        for _ in range(30):
            task = sample_helpful(rng, name)
            answer = answer_for(task, "other_instance", rng)
            assert answer != task.canonical
            j = judge_turn(task.key, answer)
            assert j.helpfulness < 1.0
            scores.append(j.helpfulness)
    # mostly nothing: only a coincidence ("4 plus 3 is 7." to "3 plus 4") can be right
    assert sum(s == 0.0 for s in scores) / len(scores) > 0.85


def _subject_words(key: dict) -> list[str]:
    """What an answer must name to show what it answers: operands, the word, the list, the amount, the subject."""
    if key["task"] == "arithmetic":
        return [str(key["a"]), key["op"], str(key["b"])]
    if key["task"] in ("count_letters", "reverse_word"):
        return [key["word"]]
    if key["task"] == "sort_numbers":
        return [key["value_text"]]
    if key["task"] == "unit_conversion":
        return [key["source"], key["target"]]
    return [key["subject"]]


def test_other_words_name_what_they_answer_and_keep_the_oracle_score_of_their_value():
    from pipelines.world.ladder import in_form

    rng = random.Random(11)
    for name in FAMILY_NAMES:
        phrasings = set()
        for _ in range(60):
            task = sample_helpful(rng, name)
            alt = answer_for(task, "alt", rng)
            assert judge_turn(task.key, alt).helpfulness == VALUE, (name, alt)
            assert all(w in alt for w in _subject_words(task.key)), (name, alt)
            assert alt != task.canonical
            phrasings.add(alt.replace(task.key["value_text"], "<v>"))
            for rung in ("close", "wrong"):  # a wrong value in other words is judged as in the canonical phrasing
                base = answer_for(task, rung, rng)
                other_words = in_form(task, base, "alt", rng, rung)
                assert other_words != base
                assert judge_turn(task.key, other_words).helpfulness == judge_turn(task.key, base).helpfulness, \
                    (name, base, other_words)
        assert len({p.split()[0] for p in phrasings}) >= 2  # more than one phrasing per family


def test_arithmetic_and_sorting_stay_in_their_learnable_ranges():
    from pipelines.world.helpful_numbers import ADD_MAX, SORT_LEN, SORT_MAX, TIMES_MAX

    rng = random.Random(13)
    for _ in range(500):
        k = sample_helpful(rng, "arithmetic").key
        top = TIMES_MAX if k["op"] == "times" else ADD_MAX
        assert 0 <= k["a"] <= top and 0 <= k["b"] <= top and k["value"] >= 0
        s = sample_helpful(rng, "sort_numbers").key
        assert SORT_LEN[0] <= len(s["items"]) <= SORT_LEN[1] and max(s["items"]) <= SORT_MAX
        assert s["items"] != s["value"]  # never already sorted
