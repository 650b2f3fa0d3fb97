"""Rollout throughput: the vLLM GeneratorPool (1 and 2 engines) against transformers' `generate`.

Same checkpoint (the `tiny` size with random weights), same prompts, same sampling (temperature 1,
no top-p/top-k truncation), K samples per prompt, up to N new tokens; all measured in this run.
Tokens are the generated tokens actually returned (up to and including EOS). Each system runs
`--repeats` times after a warm-up and the fastest run is reported: on a shared 2-core box other
processes steal cores, and vLLM's bound OpenMP threads suffer from that far more than HF does.

    python bench/rollout_throughput.py [--quick] [--prompts 32] [--samples 4] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import ray
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actors.config import GeneratorConfig, SamplingConfig  # noqa: E402
from actors.generator import EOS_ID, GeneratorPool  # noqa: E402
from model import ModelArgs, Transformer, save_pretrained  # noqa: E402

log = logging.getLogger("bench.rollout_throughput")


@dataclass
class Row:
    system: str
    tokens: int
    seconds: float

    @property
    def tok_per_s(self) -> float:
        return self.tokens / self.seconds


def make_prompts(n: int, vocab: int, seed: int) -> list[list[int]]:
    """n random prompts of 16-32 tokens, each starting with BOS."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(16, 33, (n,), generator=g).tolist()
    return [[1] + torch.randint(3, vocab, (length - 1,), generator=g).tolist() for length in lengths]


def fastest(run, repeats: int) -> tuple[int, float]:
    """(tokens, seconds) of the fastest of `repeats` calls of run() -> (tokens, seconds)."""
    return min((run() for _ in range(repeats)), key=lambda r: r[1])


def bench_pool(path: str, prompts: list[list[int]], sampling: SamplingConfig, engines: int, repeats: int) -> Row:
    cfg = GeneratorConfig(num_engines=engines, num_cpus=2.0 / engines, max_model_len=512,
                          gpu_memory_utilization=0.2)
    pool = GeneratorPool(cfg, path, name=f"bench-{engines}")
    try:
        pool.generate(prompts[:2], SamplingConfig(n=1, max_tokens=4), seed=0)  # warm-up

        def run() -> tuple[int, float]:
            t0 = time.perf_counter()
            samples = pool.generate(prompts, sampling, seed=1)
            return sum(len(s.token_ids) for s in samples), time.perf_counter() - t0

        tokens, seconds = fastest(run, repeats)
    finally:
        pool.shutdown()
    return Row(f"vLLM GeneratorPool, {engines} engine(s)", tokens, seconds)


def _hf_generated_tokens(new: torch.Tensor) -> int:
    """Tokens up to and including the first EOS of each row (HF pads the rest): new [B*K, N]."""
    is_eos = new == EOS_ID  # [B*K, N]
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full_like(new[:, 0], new.shape[1]))
    return int(first.sum())


def bench_hf(path: str, prompts: list[list[int]], sampling: SamplingConfig, repeats: int) -> Row:
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)  # [P, W], left padded with 0
    mask = torch.zeros(len(prompts), width, dtype=torch.long)  # [P, W]
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    kwargs = dict(do_sample=True, temperature=sampling.temperature, top_p=1.0, top_k=0,
                  num_return_sequences=sampling.n, pad_token_id=0, eos_token_id=EOS_ID)
    with torch.no_grad():
        model.generate(input_ids=ids[:2], attention_mask=mask[:2], max_new_tokens=4, **kwargs)  # warm-up

        def run() -> tuple[int, float]:
            torch.manual_seed(1)
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=sampling.max_tokens, **kwargs)
            return _hf_generated_tokens(out[:, width:]), time.perf_counter() - t0

        tokens, seconds = fastest(run, repeats)
    return Row("transformers LlamaForCausalLM.generate", tokens, seconds)


def print_table(rows: list[Row], baseline: Row, title: str) -> None:
    print(title)
    print(f"| {'system':<40} | {'tokens':>7} | {'seconds':>8} | {'tok/s':>8} | {'vs HF':>6} |")
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 8}|")
    for r in rows:
        ratio = r.tok_per_s / baseline.tok_per_s
        print(f"| {r.system:<40} | {r.tokens:>7} | {r.seconds:>8.2f} | {r.tok_per_s:>8.0f} | {ratio:>5.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 prompts instead of 32")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per system; the fastest counts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n_prompts = 8 if args.quick else args.prompts
    model_args = ModelArgs.from_size("tiny")
    torch.manual_seed(0)
    sampling = SamplingConfig(n=args.samples, temperature=args.temperature, top_p=1.0, max_tokens=args.new_tokens)
    prompts = make_prompts(n_prompts, model_args.vocab_size, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tiny")
        save_pretrained(Transformer(model_args), path)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": root}})
        try:
            rows = [bench_pool(path, prompts, sampling, engines, args.repeats) for engines in (1, 2)]
        finally:
            ray.shutdown()
        hf = bench_hf(path, prompts, sampling, args.repeats)
    n_params = sum(p.numel() for p in Transformer(model_args).parameters())
    title = (f"rollout throughput: tiny Llama ({n_params / 1e6:.1f}M params), {n_prompts} prompts x "
             f"{args.samples} samples x up to {args.new_tokens} new tokens, T={args.temperature}, "
             f"fastest of {args.repeats}")
    print_table(rows + [hf], hf, title)


if __name__ == "__main__":
    main()
