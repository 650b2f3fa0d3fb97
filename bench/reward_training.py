"""Reward-model training step: each pair as one shared-prefix row against a row per answer.

The learner's real ranking step (`actors.learner.Learner.train_ranking`: pairs ordered by length, each
micro-batch cut to its own width, margin loss, AdamW) on the `tiny` size with a scalar head, in this
process with the reward-model learner's 2 threads. The same pairs for both settings: a prompt of 12-26
tokens and two answers of 4-23 tokens each (the demo's pairs average an 18.8-token prompt and 13.2-token
answers), 32 pairs per step as in `reward_models.batch_size`. The baseline sends every answer as its own
row (`reward_models.shared_prefix=false`); the other runs prompt + chosen + rejected as one row, the
rejected answer masked from the chosen one, so the prompt is computed once. Both give the same scores
(tests/actors/test_learner.py checks losses and gradients); the table also prints the first step's
loss of each setting from the same initial weights, which must agree. The mean time of the steps after
`--warmup` counts.

A second table times the held-out scoring of the reward-models stage: `Learner.score_pairs` (pairs by
length, one shared-prefix row each, one call) against the path it replaced (`Learner.score` on the chosen
and on the rejected answers of each chunk of 64 pairs, in file order), on `--score-pairs` pairs; the
largest difference between their scores is printed too.

    python bench/reward_training.py [--quick] [--steps 12] [--threads 2] [--score-pairs 1400]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actors.batch import PairBatch, common_prefix_len, pad_sequences  # noqa: E402
from actors.config import LearnerConfig, OptimConfig  # noqa: E402
from actors.group import RankContext  # noqa: E402
from actors.learner import Learner  # noqa: E402
from model import ModelArgs, ScalarModel, save_pretrained  # noqa: E402


def make_pairs(n: int, vocab: int, seed: int) -> list[tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)

    def rand(lo: int, hi: int) -> list[int]:
        return torch.randint(3, vocab, (int(torch.randint(lo, hi + 1, (1,), generator=g)),), generator=g).tolist()

    out = []
    for _ in range(n):
        prompt = [1] + rand(11, 25)
        out.append((prompt + rand(4, 23) + [2], prompt + rand(4, 23) + [2]))
    return out


def batch(pairs: list[tuple[list[int], list[int]]], shared: bool) -> PairBatch:
    chosen, rejected = [c for c, _ in pairs], [r for _, r in pairs]
    return PairBatch(
        chosen=pad_sequences(chosen, 0), chosen_last=torch.tensor([len(c) - 1 for c in chosen]),
        rejected=pad_sequences(rejected, 0), rejected_last=torch.tensor([len(r) - 1 for r in rejected]),
        margin=torch.ones(len(pairs)),
        prefix_len=torch.tensor([common_prefix_len(c, r) for c, r in pairs]) if shared else None,
    )


def run(path: str, pairs: list, shared: bool, batch_size: int, warmup: int, threads: int) -> tuple[float, float, int]:
    """(mean seconds per step after warm-up, first step's loss, tokens per step) for one setting."""
    learner = Learner(LearnerConfig(init_path=path, model_kind="scalar", micro_batch_size=8,
                                    optim=OptimConfig(lr=1e-5, schedule="constant"), seed=0),
                      RankContext(0, 1, "", 0, None, threads, "bench"))
    times, first_loss, tokens = [], float("nan"), 0
    for step in range(len(pairs) // batch_size):
        chunk = pairs[step * batch_size:(step + 1) * batch_size]
        b = batch(chunk, shared)
        t0 = time.perf_counter()
        stats = learner.train_ranking(b)
        times.append(time.perf_counter() - t0)
        if step == 0:
            first_loss = stats["loss"]
            p = b.prefix_len
            tokens = int((b.chosen_last + 1).sum() + (b.rejected_last + 1).sum() - (p.sum() if p is not None else 0))
    counted = times[warmup:]
    return sum(counted) / len(counted), first_loss, tokens


def score(path: str, pairs: list, threads: int, repeats: int) -> dict[str, tuple[float, torch.Tensor]]:
    """Held-out scoring, each way: (best seconds of `repeats`, chosen and rejected scores)."""
    learner = Learner(LearnerConfig(init_path=path, model_kind="scalar", micro_batch_size=8, seed=0),
                      RankContext(0, 1, "", 0, None, threads, "bench"))

    def per_answer() -> torch.Tensor:
        out = []
        for i in range(0, len(pairs), 64):
            b = batch(pairs[i:i + 64], shared=False)
            out.append(torch.stack([learner.score(b.chosen, b.chosen_last), learner.score(b.rejected, b.rejected_last)]))
        return torch.cat(out, dim=1)

    def shared_rows() -> torch.Tensor:
        return torch.stack(learner.score_pairs(batch(pairs, shared=True)))

    results = {}
    for name, fn in (("a row per answer, chunks of 64", per_answer), ("score_pairs", shared_rows)):
        best, got = float("inf"), None
        for _ in range(repeats):
            t0 = time.perf_counter()
            got = fn()
            best = min(best, time.perf_counter() - t0)
        results[name] = (best, got)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 steps, 1 warm-up (a smoke run)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score-pairs", type=int, default=1400, help="held-out pairs scored (the demo: ~1400 per RM)")
    ap.add_argument("--score-repeats", type=int, default=3)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.warmup, args.score_pairs, args.score_repeats = 4, 1, 128, 1
    if args.steps <= args.warmup:
        ap.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")

    torch.manual_seed(args.seed)
    margs = ModelArgs.from_size("tiny")
    pairs = make_pairs(args.steps * args.batch_size, margs.vocab_size, args.seed)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rm")
        model = ScalarModel(margs)
        torch.nn.init.normal_(model.score.weight, std=0.02)  # non-zero scores, so the first losses are comparable
        save_pretrained(model, path)
        for shared in (False, True):
            results[shared] = run(path, pairs, shared, args.batch_size, args.warmup, args.threads)
        scored = score(path, make_pairs(args.score_pairs, margs.vocab_size, args.seed + 1), args.threads,
                       args.score_repeats)
    print(f"Learner.train_ranking, tiny size ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), "
          f"{args.batch_size} pairs per step, micro-batches of 8, mean of {args.steps - args.warmup} steps after "
          f"{args.warmup} warm-up; {args.threads} threads, torch {torch.__version__}")
    print("| setting | tokens per step | s per step | vs a row per answer | first step's loss |")
    print("|---|---|---|---|---|")
    base = results[False][0]
    for shared, name in ((False, "a row per answer"), (True, "one shared-prefix row per pair")):
        seconds, loss, tokens = results[shared]
        print(f"| {name} | {tokens} | {seconds:.3f} | {base / seconds:.2f}x | {loss:.5f} |")
    print(f"\nHeld-out scoring of {args.score_pairs} pairs (best of {args.score_repeats}):")
    print("| path | s | vs a row per answer |")
    print("|---|---|---|")
    (base, ref), *_ = scored.values()
    for name, (seconds, got) in scored.items():
        print(f"| {name} | {seconds:.2f} | {base / seconds:.2f}x |")
    print(f"largest score difference between the paths: {float((got - ref).abs().max()):.2e}")


if __name__ == "__main__":
    main()
