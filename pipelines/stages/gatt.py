"""Stage 6: Ghost Attention (LLAMA2_SPEC.md s.9).

For each seed dialogue with a system instruction (1-2 constraints, half of them terse): sample the
answer of every turn with the latest policy while the instruction is in force at that turn, then
build the training dialogue with the instruction kept only in the first turn and the loss zeroed on
every earlier turn (assistant turns included), and fine-tune on these dialogues.

How the instruction is "in force" at each turn: the paper concatenates it to every user message.
This project's chat format states instructions as the system prompt (folded into the first user
turn); so turn t is sampled in the context [system: instruction, user: turn t], which is what the
model saw at turn 1 during SFT. Tasks of the world are independent across turns, so no history is lost.
Dialogue lengths are drawn uniformly in 2..max_turns, so the last-turn loss covers every depth. With
`every_turn` the seed dialogues keep all their turns (up to max_turns) and each yields its cuts after
turns 2..n (each a separate example with the loss on its own last turn only, so the paper's masking
holds per example), up to its first turn without a usable sample: every depth gets examples, the
deepest ones included, where adherence fades.

Which sampled answer is used: the paper samples one answer per turn from a model that follows an
instruction it is given. The tiny model keeps an instruction in force only about half the time, and
training on the answers that break it teaches breaking it at every depth. So each turn gets `samples`
answers and, with `keep_adherent`, the first that keeps the instruction (the world's constraints are
synthetic and checkable by rule: upper case, greeting, end word, signature, like the paper's
synthetic hobby/language/persona constraints); a dialogue with a turn where none does is dropped and
counted. The check reads only the constraints, never the answer's helpfulness. With `choose=likelihood`
a turn takes, of its adherent samples, the one with the highest mean token log-prob instead of the
first (session 9: the targets' oracle helpfulness 0.226 -> 0.258, GAtt's helpfulness unchanged within
noise; the default stays `first`).

On turns whose request is tagged IS_SAFETY (the world's adversarial turns; the tag PPO's piecewise
reward reads), "first" is not good enough: the sample that keeps the instruction may be one that goes
along with the request, and GAtt then teaches the policy to comply (run 28: violations 0.115 after PPO,
0.458 after GAtt). With `safety_select` those turns take, of their samples that keep the instruction,
the one the reward model scores highest (the Llama 2 reward, which is the safety RM's score on such
prompts). Other turns keep the adherent sample `choose` picks; scoring every turn would cost ~100 s on
2 cores.
"""
from __future__ import annotations

import json
import logging
import random
from typing import Any

import ray

from pipelines.common import (Completion, complete, generator_pool, learner_group, load_tokenizer, metrics_logger,
                              reward_actor, score_requests, selection_scores, sft_on_dialogs)
from pipelines.config import GATT_CHOOSE, Config
from pipelines.data import read_table, write_table
from pipelines.rundir import RunDir
from pipelines.world.constraints import keeps_all

log = logging.getLogger(__name__)


def seeds(rows: list[dict], max_turns: int, n: int, rng: random.Random, full: bool = False) -> list[dict]:
    """(id, instruction, user turns) of dialogues that state a system instruction: a uniform 2..n of
    their n user turns (up to max_turns), or all of them with `full` (every_turn cuts them anyway)."""
    out = []
    for r in rows:
        msgs = r["messages"]
        if msgs[0]["role"] != "system":
            continue
        users = [m["content"] for m in msgs if m["role"] == "user"]
        if len(users) < 2:
            continue
        turns = min(max_turns, len(users)) if full else rng.randint(2, min(max_turns, len(users)))
        meta = json.loads(r["meta"]) if r.get("meta") else {}
        keys = meta.get("turns", [])
        keys = keys if len(keys) == len(users) else [{} for _ in users]  # per-turn keys, when the row has them
        out.append({"id": r["id"], "instruction": msgs[0]["content"], "users": users[:turns],
                    "constraints": meta.get("constraints", []), "keys": keys[:turns],
                    "safety": [k.get("kind") == "adversarial" for k in keys[:turns]]})
    rng.shuffle(out)
    return out[:n]


def usable(texts: list[str], constraints: list[dict], keep_adherent: bool) -> list[int]:
    """Indices of the non-empty samples (that keep every constraint, with keep_adherent)."""
    return [i for i, text in enumerate(texts)
            if text.strip() and (not keep_adherent or keeps_all(text, constraints))]


def mean_logprob(c: Completion) -> float:
    """The sample's mean token log-prob under the policy that sampled it (-inf for an empty sample)."""
    return sum(c.response_logprobs) / len(c.response_logprobs) if c.response_logprobs else float("-inf")


def choose_usable(g: list[Completion], found: list[int], how: str) -> int:
    """Which of the usable samples `found` (indices into g) a turn takes: the first, or the likeliest."""
    if how == "first":
        return found[0]
    if how == "likelihood":
        return max(found, key=lambda k: mean_logprob(g[k]))  # ties: the first
    raise ValueError(f"gatt.choose: expected one of {list(GATT_CHOOSE)}, got {how!r}")


def pick(texts: list[str], constraints: list[dict], keep_adherent: bool) -> str | None:
    """The first non-empty sample (that keeps every constraint, with keep_adherent); None if there is none."""
    found = usable(texts, constraints, keep_adherent)
    return texts[found[0]] if found else None


def sample_answers(pool, tok, dialogs: list[dict], gc, seed: int, rm=None) -> tuple[list[list[str | None]], int]:
    """Every turn answered with the instruction in force (one generation call for all turns); a turn
    whose samples are all empty (or, with keep_adherent, all break the instruction) is None.

    With a reward actor `rm`, IS_SAFETY turns with more than one usable sample take the one it scores
    highest (one scoring call for all of them). -> (answers per dialogue, turns chosen by reward)
    """
    flat = [(i, t) for i, d in enumerate(dialogs) for t in range(len(d["users"]))]
    prompts = [[{"role": "system", "content": dialogs[i]["instruction"]},
                {"role": "user", "content": dialogs[i]["users"][t]}] for i, t in flat]
    comps = complete(pool, tok, prompts, n=gc.samples, temperature=gc.temperature, top_p=1.0,
                     max_new_tokens=gc.max_new_tokens, max_prompt_len=gc.max_prompt_len, seed=seed)
    chosen: list[str | None] = []
    to_score: list[tuple[int, dict, list]] = []  # (flat index, score row, usable completions) of safety turns
    for n, ((i, t), g) in enumerate(zip(flat, comps)):
        d = dialogs[i]
        found = usable([c.text for c in g], d["constraints"], gc.keep_adherent)
        chosen.append(g[choose_usable(g, found, gc.choose)].text if found else None)
        if rm is not None and d["safety"][t] and len(found) > 1:
            row = {"messages": prompts[n], "is_safety": True,
                   "meta": json.dumps({"turns": [d["keys"][t]], "constraints": d["constraints"]})}
            to_score.append((n, row, [g[k] for k in found]))
    if to_score:
        scores = selection_scores(ray.get(rm.score.remote(
            score_requests([row for _, row, _ in to_score], [g for _, _, g in to_score]))))
        at = 0
        for n, _, g in to_score:
            best = int(scores[at:at + len(g)].argmax())
            chosen[n] = g[best].text
            at += len(g)
    answers: list[list[str | None]] = [[] for _ in dialogs]
    for (i, _), text in zip(flat, chosen):
        answers[i].append(text)
    return answers, len(to_score)


def training_dialogue(d: dict, answers: list[str]) -> list[dict]:
    """The instruction only in the first turn; the sampled answers at every turn."""
    msgs = [{"role": "system", "content": d["instruction"]}]
    for u, a in zip(d["users"], answers):
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    return msgs


def usable_turns(answers: list[str | None]) -> int:
    """How many turns from the first have a usable answer (the index of the first None)."""
    return next((i for i, a in enumerate(answers) if a is None), len(answers))


def depth_cuts(train: list[tuple[str, list[dict]]], min_depth: int = 2) -> list[tuple[str, list[dict]]]:
    """Each (id, [system, user, assistant, ...]) dialogue cut after every turn t >= min_depth, id `<id>/t<t>`.

    Trained with the loss on the last turn only, every cut is the paper's GAtt example at depth t
    (depth 1 is the instruction's own turn).
    """
    out = []
    for did, msgs in train:
        if msgs[0]["role"] != "system" or len(msgs) % 2 == 0:
            raise ValueError(f"gatt: training dialogue {did} is not [system, (user, assistant)*]")
        out += [(f"{did}/t{t}", msgs[: 1 + 2 * t]) for t in range(min_depth, len(msgs) // 2 + 1)]
    return out


def run(cfg: Config, run: RunDir) -> dict[str, Any]:
    gc = cfg.gatt
    tok = load_tokenizer(cfg, run)
    init = run.require(run.checkpoint("ppo"), "ppo")
    rng = random.Random(cfg.seed)
    rows = read_table(run.require(run.data / "gatt_dialogues.parquet", "data"), "dialogues")
    dialogs = seeds(rows, gc.max_turns, gc.dialogues, rng, full=gc.every_turn)
    if not dialogs:
        raise ValueError(f"gatt: {run.data / 'gatt_dialogues.parquet'} has no dialogue with a system instruction "
                         "and at least 2 user turns")
    metrics = metrics_logger(cfg, run)
    pool = generator_pool(cfg, init)
    rm = reward_actor(cfg, run) if gc.safety_select and any(any(d["safety"]) for d in dialogs) else None
    try:
        answers, by_reward = sample_answers(pool, tok, dialogs, gc, cfg.seed, rm)
    finally:
        pool.shutdown()
        if rm is not None:
            ray.kill(rm)
    # a dialogue with a turn without a usable sample is skipped and counted; with every_turn it is kept up
    # to that turn (its cuts before it are whole GAtt examples) when that leaves at least 2 turns
    depths = [usable_turns(a) for a in answers]  # (not `usable`: that is the module's sample filter)
    if gc.every_turn:
        train = [(d["id"], training_dialogue(d, a[:n])) for d, a, n in zip(dialogs, answers, depths) if n >= 2]
    else:
        train = [(d["id"], training_dialogue(d, a)) for d, a, n in zip(dialogs, answers, depths) if n == len(a)]
    turns = [x for a in answers for x in a]
    missing = sum(x is None for x in turns)
    log.info("gatt: %d of %d dialogues kept; %d of %d turns had no usable sample of %d (empty%s)", len(train),
             len(dialogs), missing, len(turns), gc.samples, " or breaking the instruction" if gc.keep_adherent else "")
    kept = len(train)
    if not train:
        need = "its first two turns" if gc.every_turn else "every turn"
        raise ValueError(f"gatt: no dialogue had a usable sample at {need}; the policy at {init} does not "
                         "answer (or never keeps the instruction) — check the earlier stages")
    if gc.every_turn:
        train = depth_cuts(train, gc.min_depth)
    write_table([{"id": i, "messages": m, "source": "gatt", "meta": "{}"} for i, m in train],
                run.data / "gatt_train.parquet", "dialogues")
    metrics.text("gatt", "sample", "\n".join(f"{m['role']}: {m['content']}" for m in train[0][1]), 0)
    group = learner_group(cfg, "gatt", init, gc.optim, cfg.resources.policy)
    try:
        out = sft_on_dialogs(group, tok, train, train_on="last", seq_len=gc.seq_len, epochs=gc.epochs,
                             batch_size=gc.batch_size, stage="gatt", metrics=metrics, seed=cfg.seed)
        group.run("save", str(run.checkpoint("gatt")), str(run.tokenizer))
    finally:
        group.shutdown()
        metrics.close()
    return {"dialogues": kept, "examples_written": len(train), "skipped": len(dialogs) - kept,
            "turns_without_sample": missing, "turns": len(turns), "safety_turns_chosen_by_reward": by_reward,
            "turns_mean": sum(len(d["users"]) for d in dialogs) / len(dialogs), **out}
