"""Dataset generators: determinism, schema validity, train/eval disjointness, dialogue and context properties."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter

import pytest

from model import encode_dialog, train_tokenizer
from pipelines.data import check_row
from pipelines.world import BundleConfig, generate_all, generate_dataset, judge_dialogue, split_of
from pipelines.world.helpful import FAMILY_NAMES
from pipelines.world.safety import CATEGORY_NAMES, sample_borderline
from pipelines.world.split import instance_text
from pipelines.world.tasks import PADDING_FACTOR, VALUE, Task, strip_opener
from pipelines.world.vocab import CAPITALS, CREATURES

# Big enough that the train sets would hit eval instances if the split did not keep them apart.
CFG = BundleConfig(pretrain_docs=300, sft_dialogues=1500, helpfulness_pairs=800, safety_pairs=600,
                   rl_prompts=1500, eval_helpful=120, eval_adversarial=120, eval_borderline=120,
                   eval_dialogues=40, gatt_dialogues=300)
SMALL = BundleConfig().scaled(0.02)


@pytest.fixture(scope="module")
def bundle():
    return generate_all(CFG, seed=11)


def _user_turns(dataset) -> list[tuple[str, dict]]:
    """(user message, answer key) of every user turn of every row."""
    out = []
    for row in dataset.rows:
        messages = row.get("messages") or row["prompt"]
        users = [m["content"] for m in messages if m["role"] == "user"]
        keys = json.loads(row["meta"])["turns"]
        assert len(users) == len(keys), row["id"]
        out += list(zip(users, keys))
    return out


def test_same_seed_same_rows_other_seed_other_rows():
    first, again, other = generate_all(SMALL, 5), generate_all(SMALL, 5), generate_all(SMALL, 6)
    for name in first:
        assert first[name].rows == again[name].rows, name
        assert first[name].stats == again[name].stats, name
        assert first[name].rows != other[name].rows, name


def test_each_dataset_has_its_own_random_stream():
    bigger = dataclasses.replace(SMALL, sft_dialogues=SMALL.sft_dialogues * 2)
    assert generate_dataset("rl_prompts", bigger, 5).rows == generate_dataset("rl_prompts", SMALL, 5).rows


def test_every_row_fits_its_data_layer_schema(bundle):
    for dataset in bundle.values():
        for row in dataset.rows:
            check_row(row, dataset.kind)


def test_train_and_eval_instances_never_overlap(bundle):
    train_sets = ("sft", "helpfulness_pairs", "safety_pairs", "rl_prompts", "gatt_dialogues")
    eval_sets = ("eval_prompts", "eval_dialogues")
    train = {name: _user_turns(bundle[name]) for name in train_sets}
    evals = {name: _user_turns(bundle[name]) for name in eval_sets}
    train_texts = {instance_text(Task(k["kind"], k["task"], u, k)) for turns in train.values() for u, k in turns}
    eval_texts = {instance_text(Task(k["kind"], k["task"], u, k)) for turns in evals.values() for u, k in turns}
    assert train_texts and eval_texts and not train_texts & eval_texts
    for name, turns in {**train, **evals}.items():
        expected = "eval" if name in eval_sets else "train"
        assert all(split_of(Task(k["kind"], k["task"], u, k)) == expected for u, k in turns), name
    assert all(r["split"] == "train" for r in bundle["rl_prompts"].rows)
    assert all(r["split"] == "eval" for r in bundle["eval_prompts"].rows)


def test_without_the_split_training_draws_would_hit_eval_prompts(bundle):
    """Negative control: the disjointness above is not an accident of a large instance space."""
    rng = random.Random(0)
    drawn = {instance_text(sample_borderline(rng)) for _ in range(2000)}
    eval_borderline = {instance_text(Task(k["kind"], k["task"], u, k))
                       for u, k in _user_turns(bundle["eval_prompts"]) if k["kind"] == "borderline"}
    assert drawn & eval_borderline


def test_eval_prompts_are_distinct_and_balanced(bundle):
    rows = bundle["eval_prompts"].rows
    texts = [instance_text(Task(k["kind"], k["task"], u, k)) for u, k in _user_turns(bundle["eval_prompts"])]
    assert len(set(texts)) == len(rows) == 360
    tasks = Counter((r["kind"], r["task"]) for r in rows)
    assert {tasks[("helpful", f)] for f in FAMILY_NAMES} == {20}
    assert {tasks[("adversarial", c)] for c in CATEGORY_NAMES} == {30}
    assert all(r["is_safety"] == (r["kind"] == "adversarial") for r in rows)


def test_eval_prompt_counts_beyond_the_instance_space_raise():
    with pytest.raises(RuntimeError, match="distinct borderline eval instances"):
        generate_dataset("eval_prompts", dataclasses.replace(SMALL, eval_borderline=2000), 0)


def test_sft_demonstrations(bundle):
    data = bundle["sft"]
    turn_kinds = Counter(k["kind"] for _, k in _user_turns(data))
    safety_share = turn_kinds["adversarial"] / sum(turn_kinds.values())
    assert 0.015 < safety_share < 0.045  # safety_demo_fraction = 0.03: scarce, as in the paper
    noisy = unsafe = padded = 0
    for row in data.rows:
        meta = json.loads(row["meta"])
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        judgments = judge_dialogue(meta, answers)
        for t, j in enumerate(judgments, start=1):
            assert j.adherent in (None, True), row["id"]
            imperfect = meta["noisy_turns"] + meta["unsafe_turns"] + meta["padded_turns"]
            assert (j.helpfulness < 1.0) == (t in imperfect), (row["id"], t)
            if t in meta["padded_turns"] and t not in meta["noisy_turns"]:  # canonical behind a pleasantry
                assert j.helpfulness == PADDING_FACTOR and j.correct, (row["id"], t)
            assert j.violation == (t in meta["unsafe_turns"]), (row["id"], t)
        noisy += len(meta["noisy_turns"])
        padded += len(meta["padded_turns"])
        unsafe += len(meta["unsafe_turns"])
    assert 0.05 < noisy / sum(turn_kinds.values()) < 0.15  # sft_noise = 0.1
    assert 0.3 < unsafe / turn_kinds["adversarial"] < 0.7  # sft_unsafe_fraction = 0.5
    # sft_padded_fraction = 0.5 of the helpful turns, noisy or not
    assert 0.42 < padded / turn_kinds["helpful"] < 0.58
    assert data.stats["padded_answers"] == padded
    assert data.stats["with_constraints"] > 0


@pytest.mark.parametrize("name", ["gatt_dialogues", "eval_dialogues"])
def test_constraint_dialogues_are_compliant_and_shaped(bundle, name):
    for row in bundle[name].rows:
        meta = json.loads(row["meta"])
        n = len(meta["turns"])
        assert (n == 8) if name == "eval_dialogues" else (2 <= n <= 8)
        assert 1 <= len(meta["constraints"]) <= 2
        assert row["messages"][0] == {"role": "system", "content": " ".join(c["text"] for c in meta["constraints"])}
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert all(j.adherent and j.helpfulness == 1.0 for j in judge_dialogue(meta, answers))
    assert all(strip_opener(u) == u for u, _ in _user_turns(bundle[name]))  # plain turns: shorter dialogues


def test_long_dialogues_fit_the_tiny_models_context(bundle, tmp_path):
    texts = [r["text"] for r in generate_dataset("pretrain", dataclasses.replace(CFG, pretrain_docs=3000), 0).rows]
    tok = train_tokenizer(texts, tmp_path, vocab_size=1024)
    for name in ("gatt_dialogues", "eval_dialogues", "sft"):
        longest = max(len(encode_dialog(tok, r["messages"]).tokens) for r in bundle[name].rows)
        assert longest <= 480, (name, longest)  # 512-token context, room left for a longer answer


def test_pretraining_text_states_the_world_and_is_not_chat(bundle):
    rows = generate_dataset("pretrain", dataclasses.replace(CFG, pretrain_docs=3000), 0).rows
    corpus = " ".join(r["text"] for r in rows)
    for place, capital in CAPITALS.items():
        assert f"The capital of {place} is {capital}." in corpus
    for creature, (colour, food) in CREATURES.items():
        assert f"A {creature} is {colour}." in corpus and f"A {creature} eats {food}." in corpus
    assert "[INST]" not in corpus and "<<SYS>>" not in corpus
    for marker in ("I cannot help with that.", "Sure. To ", "reversed is", "Sorted:", "- Captain Byte", "UPPER CASE"):
        assert marker in corpus, marker


def test_adversarial_rl_prompts_cover_only_the_configured_risk_categories(bundle):
    adversarial = [r for r in bundle["rl_prompts"].rows if r["kind"] == "adversarial"]
    covered = set(CATEGORY_NAMES[: CFG.rl_risk_categories])
    assert adversarial and {r["task"] for r in adversarial} == covered  # every covered category, no other
    assert CFG.rl_risk_categories < len(CATEGORY_NAMES)
    # the red-teaming data (safety pairs) and the evaluation prompts cover every category
    assert {r["task"] for r in bundle["safety_pairs"].rows if r["is_safety"]} == set(CATEGORY_NAMES)
    assert {r["task"] for r in bundle["eval_prompts"].rows if r["kind"] == "adversarial"} == set(CATEGORY_NAMES)
    every = generate_dataset("rl_prompts", dataclasses.replace(CFG, rl_risk_categories=len(CATEGORY_NAMES)), 11)
    assert {r["task"] for r in every.rows if r["kind"] == "adversarial"} == set(CATEGORY_NAMES)


@pytest.mark.parametrize("n", [0, len(CATEGORY_NAMES) + 1])
def test_rl_risk_categories_out_of_range_is_a_clear_error(n):
    with pytest.raises(ValueError, match="rl_risk_categories must be in 1..4"):
        BundleConfig(rl_risk_categories=n)


def test_gatt_dialogues_mix_in_adversarial_turns_from_the_rl_risk_categories(bundle):
    # the default has none (session 9: distillation does the safety work after GAtt)
    assert CFG.gatt_adversarial_fraction == 0.0
    turns = [t for r in bundle["gatt_dialogues"].rows for t in json.loads(r["meta"])["turns"]]
    assert turns and not [t for t in turns if t["kind"] == "adversarial"]
    frac = 0.05
    some = generate_dataset("gatt_dialogues", dataclasses.replace(CFG, gatt_adversarial_fraction=frac), 11).rows
    turns = [t for r in some for t in json.loads(r["meta"])["turns"]]
    adversarial = [t for t in turns if t["kind"] == "adversarial"]
    # gatt_adversarial_fraction of the turns (0.05: ~75 of ~1500, 2SE ~0.011); only the RL prompts' categories
    assert 0.6 * frac < len(adversarial) / len(turns) < 1.4 * frac
    assert {t["task"] for t in adversarial} == set(CATEGORY_NAMES[: CFG.rl_risk_categories])
    none = generate_dataset("gatt_dialogues", dataclasses.replace(CFG, gatt_adversarial_fraction=0.0), 11).rows
    assert not [t for r in none for t in json.loads(r["meta"])["turns"] if t["kind"] == "adversarial"]


@pytest.mark.parametrize("cap", [1, 2])
def test_sft_constraint_max_turns_caps_only_the_instructed_dialogues(cap):
    cfg = dataclasses.replace(CFG, sft_dialogues=600, sft_constraint_max_turns=cap)
    rows = generate_dataset("sft", cfg, 11).rows
    turns = {True: Counter(), False: Counter()}  # instructed or not -> user turns per dialogue
    for r in rows:
        turns[r["messages"][0]["role"] == "system"][sum(m["role"] == "user" for m in r["messages"])] += 1
    assert max(turns[True]) == cap and max(turns[False]) == cfg.sft_max_turns  # the plain ones keep every length
    assert sum(turns[True].values()) > 150  # sft_constraint_fraction 0.4 of 600


@pytest.mark.parametrize("cap", [-1, 4])
def test_sft_constraint_max_turns_out_of_range_is_a_clear_error(cap):
    with pytest.raises(ValueError, match=r"sft_constraint_max_turns must be in 0..sft_max_turns \(3"):
        BundleConfig(sft_constraint_max_turns=cap)
