"""vLLM (CPU build) loads a checkpoint written by save_pretrained and matches the project's model:
identical greedy continuations and per-token log-probs."""

import gc
import os
from pathlib import Path

import pytest
import torch

# The in-process engine (ENVIRONMENT.md): must be set before vllm is imported.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
vllm = pytest.importorskip("vllm")
from vllm.inputs import TokensPrompt  # noqa: E402

from model import ModelArgs, Transformer, save_pretrained  # noqa: E402

# head_dim 32: vLLM's CPU attention supports head sizes 32, 64, 80, ...
ARGS = ModelArgs(dim=128, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=256, multiple_of=32, max_seq_len=128,
                 norm_eps=1e-3, rope_theta=1000.0)
PROMPTS = [[5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15], [200, 3]]
NEW_TOKENS = 8


def test_vllm_greedy_tokens_and_logprobs_match(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Transformer(ARGS).eval()
    with torch.no_grad():  # weights far from init so that greedy choices are not near-ties
        for p in model.parameters():
            p.normal_(0, 0.3) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    save_pretrained(model, tmp_path / "ckpt")

    # kv_cache_memory_bytes instead of gpu_memory_utilization: on CPU the latter is a share of host
    # memory minus this process's RSS, which fails when the test process is already large.
    llm = vllm.LLM(
        model=str(tmp_path / "ckpt"), skip_tokenizer_init=True, dtype="float32", max_model_len=ARGS.max_seq_len,
        kv_cache_memory_bytes=32 * 1024**2, enforce_eager=True, distributed_executor_backend="uni", seed=0,
    )
    try:
        params = vllm.SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, logprobs=0)
        outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in PROMPTS], params, use_tqdm=False)
    finally:
        del llm
        gc.collect()

    for prompt, out in zip(PROMPTS, outputs):
        completion = out.outputs[0]
        generated = list(completion.token_ids)
        assert len(generated) == NEW_TOKENS
        # logprobs=0 returns only the sampled token's log-prob at each step
        vllm_logprobs = torch.tensor([step[tok].logprob for step, tok in zip(completion.logprobs, generated)])
        with torch.no_grad():
            logits = model(torch.tensor([prompt + generated]))[0, len(prompt) - 1 : -1]  # [N, V]
        ours = logits.log_softmax(-1)
        assert ours.argmax(-1).tolist() == generated
        ours_taken = ours.gather(-1, torch.tensor(generated)[:, None]).squeeze(-1)  # [N]
        assert (ours_taken - vllm_logprobs).abs().max().item() < 1e-3
