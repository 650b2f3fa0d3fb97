"""Reward-model scoring throughput: bf16 autocast and intra-op threads against the fp32, 1-thread baseline.

The scorer the reward actor runs (`actors.learned_scorer.LearnedScorer`) on one checkpoint of the
`tiny` size with a scalar head (random weights: speed does not depend on them), the same requests for
every setting: prompts of 24-48 tokens with answers of 8-64 tokens, the lengths the demo's rejection
sampling and context distillation score. Every setting is warmed up once and the fastest of
`--repeats` runs counts. The baseline (fp32, 1 thread) is what the reward actor ran before
`reward.scorer.autocast_bf16` and `reward.torch_threads` existed. The bf16 rows also report how often
they rank a pair of requests as fp32 does (Kendall-style agreement over all pairs), so the speed is
not bought with a different ranking.

    python bench/reward_scoring.py [--quick] [--requests 512] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actors.learned_scorer import LearnedScorer  # noqa: E402
from actors.scorers import ScoreRequest  # noqa: E402
from model import ModelArgs, ScalarModel, save_pretrained  # noqa: E402
from model.precision import bf16_autocast_fast  # noqa: E402


@dataclass
class Row:
    threads: int
    bf16: bool
    seconds: float
    n: int
    agreement: float | None  # pairwise ranking agreement with the fp32 scores, None for fp32 rows

    @property
    def setting(self) -> str:
        return f"{'bf16' if self.bf16 else 'fp32'}, {self.threads} thread{'s' if self.threads > 1 else ''}"

    @property
    def per_s(self) -> float:
        return self.n / self.seconds


def make_requests(n: int, vocab: int, seed: int) -> list[ScoreRequest]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        p = int(torch.randint(24, 49, (1,), generator=g))
        a = int(torch.randint(8, 65, (1,), generator=g))
        prompt = [1] + torch.randint(3, vocab, (p - 1,), generator=g).tolist()
        answer = torch.randint(3, vocab, (a,), generator=g).tolist()
        out.append(ScoreRequest(prompt_tokens=prompt, response_tokens=answer))
    return out


def pairwise_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of request pairs (i < j) that a and b order the same way (ties in either count as disagreement)."""
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), k=1)
    return float(np.mean((da[iu] == db[iu]) & (da[iu] != 0)))


def measure(scorer: LearnedScorer, requests: list[ScoreRequest], repeats: int) -> tuple[float, np.ndarray]:
    scorer.raw(requests[: scorer.batch_size])  # warm-up
    best, scores = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        scores = scorer.raw(requests)
        best = min(best, time.perf_counter() - t0)
    return best, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64 requests, 1 repeat (a smoke run)")
    ap.add_argument("--requests", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.requests, args.repeats = 64, 1

    cores = os.cpu_count() or 1
    thread_counts = sorted({1, min(2, cores)})
    torch.manual_seed(args.seed)
    margs = ModelArgs.from_size("tiny")
    model = ScalarModel(margs)
    requests = make_requests(args.requests, margs.vocab_size, args.seed)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rm")
        save_pretrained(model, path)
        base_scores = None
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for bf16 in (False, True):
                scorer = LearnedScorer(path, batch_size=args.batch_size, device="cpu", autocast_bf16=bf16)
                seconds, scores = measure(scorer, requests, args.repeats)
                if not bf16 and threads == 1:
                    base_scores = scores
                agree = None if not bf16 else pairwise_agreement(base_scores, scores)
                rows.append(Row(threads, bf16, seconds, len(requests), agree))
    base, native = rows[0], bf16_autocast_fast("cpu")
    print(f"LearnedScorer, tiny size ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), "
          f"{len(requests)} requests, batch {args.batch_size}, fastest of {args.repeats}; {cores} cores, "
          f"torch {torch.__version__}; native bf16 matmuls here: {'yes' if native else 'no'} "
          f"(model.autocast_bf16=auto would pick {'bf16' if native else 'fp32'})")
    print("| setting | seconds | sequences/s | vs fp32 1 thread | ranking agreement with fp32 |")
    print("|---|---|---|---|---|")
    for r in rows:
        agree = "-" if r.agreement is None else f"{r.agreement:.3f}"
        print(f"| {r.setting} | {r.seconds:.2f} | {r.per_s:.0f} | {base.seconds / r.seconds:.2f}x | {agree} |")


if __name__ == "__main__":
    main()
