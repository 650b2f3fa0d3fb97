"""The Llama 2 transformer (LLAMA2_SPEC.md section 1; paper section 2.2 and Meta's llama/model.py).

Pre-norm decoder, RMSNorm in fp32, RoPE in the HF rotate-half layout (so checkpoints load unchanged in
transformers and vLLM), grouped-query attention, SwiGLU FFN, no biases, untied output projection.
The LM (`Transformer`) and the scalar reward/value model (`ScalarModel`) share the trunk by
composition: both hold `tok_embeddings`, `layers` and `norm` (Meta's names) built by `build_trunk`, and
run them through `trunk_forward`. The model holds no device or parallelism code.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from model.args import ModelArgs

INIT_STD = 0.02


class RMSNorm(nn.Module):
    """y = x * rsqrt(mean(x^2) + eps) * w, normalised in fp32 as in Meta's reference."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for positions [B, T] in the rotate-half layout: each [B, T, head_dim]."""
    exponents = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    inv_freq = 1.0 / (theta**exponents)  # [D/2]
    angles = positions.float()[..., None] * inv_freq  # [B, T, D/2]
    angles = torch.cat((angles, angles), dim=-1)  # [B, T, D]: frequency i drives dims i and i + D/2
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, D] by cos/sin [B, T, D]; pairs are (i, i + D/2) (HF rotate-half)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # [B, H, T, D]
    return x * cos[:, None] + rotated * sin[:, None]


class Attention(nn.Module):
    """Grouped-query self-attention: n_kv_heads key/value heads serve n_heads query heads."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # Query head h reads kv head h // n_rep (consecutive query heads share a kv head, as in Meta's
        # repeat_kv and HF). enable_gqa does that inside the kernel, bit-identical to repeating k and v
        # n_rep times and ~15% faster fwd+bwd on CPU (tests/model/test_transformer.py checks both).
        gqa = self.n_kv_heads != self.n_heads
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)  # [B, H, T, D]
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)  # [B, H, T, D]
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # [B, T, H*D]
        return self.wo(out)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x) (paper section 2.2; Shazeer 2020)."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        hidden = args.ffn_hidden_dim
        self.w1 = nn.Linear(args.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, args.dim, bias=False)
        self.w3 = nn.Linear(args.dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then h + ffn(norm(h))."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.attention = Attention(args)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Trunk(Protocol):
    """What `trunk_forward` needs: Meta's attribute names on any module."""

    args: ModelArgs
    tok_embeddings: nn.Embedding
    layers: nn.ModuleList
    norm: RMSNorm


def build_trunk(module: nn.Module, args: ModelArgs) -> None:
    """Give `module` the shared trunk under Meta's names (tok_embeddings, layers, norm)."""
    module.args = args
    # An explicit empty weight skips nn.Embedding's own N(0, 1) draw: `init_weights` draws it (or a
    # checkpoint fills it), and on the meta device that draw imported torch._dynamo (~2 s per actor start).
    module.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, _weight=torch.empty(args.vocab_size, args.dim))
    module.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))
    module.norm = RMSNorm(args.dim, args.norm_eps)


def segment_positions_and_mask(segment_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions restarting at 0 per segment [B, T] and the attention mask [B, 1, T, T] (True = attend).

    A segment is a maximal run of equal ids; a token attends to earlier-or-equal tokens of its own run,
    so packed SFT examples do not see each other (LLAMA2_SPEC.md section 4).
    """
    B, T = segment_ids.shape
    idx = torch.arange(T, device=segment_ids.device).expand(B, T)  # [B, T]
    is_start = torch.ones_like(segment_ids, dtype=torch.bool)  # [B, T]
    is_start[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    start = torch.where(is_start, idx, torch.zeros_like(idx)).cummax(dim=1).values  # [B, T]
    run = is_start.long().cumsum(dim=1)  # [B, T]: run index, distinct per segment
    same = run[:, :, None] == run[:, None, :]  # [B, T, T]
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()  # [T, T]
    return idx - start, (same & causal)[:, None]  # [B, T], [B, 1, T, T]


def _check_inputs(
    tokens: torch.Tensor, positions: torch.Tensor | None, segment_ids: torch.Tensor | None,
    attn_mask: torch.Tensor | None = None,
) -> None:
    if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"tokens must be an integer tensor [B, T], got {tuple(tokens.shape)} {tokens.dtype}")
    for name, t in (("positions", positions), ("segment_ids", segment_ids)):
        if t is not None and t.shape != tokens.shape:
            raise ValueError(f"{name} must have the shape of tokens {tuple(tokens.shape)}, got {tuple(t.shape)}")
    if attn_mask is not None:
        B, T = tokens.shape
        if attn_mask.shape != (B, 1, T, T) or attn_mask.dtype != torch.bool:
            raise ValueError(f"attn_mask must be a bool tensor [B, 1, T, T] = {(B, 1, T, T)}, "
                             f"got {tuple(attn_mask.shape)} {attn_mask.dtype}")
        if segment_ids is not None or positions is None:
            raise ValueError("attn_mask replaces segment_ids and needs explicit positions")


def trunk_forward(
    model: Trunk,
    tokens: torch.Tensor,
    positions: torch.Tensor | None = None,
    segment_ids: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run embeddings, blocks and final norm: tokens [B, T] -> hidden [B, T, dim].

    The attention is causal, or within segments (`segment_ids`), or exactly `attn_mask` ([B, 1, T, T],
    True = attend; with explicit `positions`), e.g. two answers that share their prompt in one row.
    """
    _check_inputs(tokens, positions, segment_ids, attn_mask)
    B, T = tokens.shape
    mask = attn_mask
    if segment_ids is not None:
        segment_pos, mask = segment_positions_and_mask(segment_ids)
        positions = segment_pos if positions is None else positions
    elif positions is None:
        positions = torch.arange(T, device=tokens.device).expand(B, T)  # [B, T]
    h = model.tok_embeddings(tokens)  # [B, T, dim]
    cos, sin = rope_cos_sin(positions, model.args.head_dim, model.args.rope_theta, h.dtype)  # [B, T, D]
    for layer in model.layers:
        h = layer(h, cos, sin, mask)
    return model.norm(h)  # [B, T, dim]


def init_weights(model: nn.Module, n_layers: int) -> None:
    """Normal(0, 0.02) for embeddings and linears; residual-stream outputs (wo, w2) scaled by
    1/sqrt(2 * n_layers) so the residual variance does not grow with depth (GPT-2 section 2.3)."""
    if any(p.is_meta for p in model.parameters()):
        return  # built on the meta device to be loaded from a checkpoint: nothing to draw
    residual_std = INIT_STD / math.sqrt(2 * n_layers)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            is_residual = name.endswith(("attention.wo", "feed_forward.w2"))
            nn.init.normal_(module.weight, mean=0.0, std=residual_std if is_residual else INIT_STD)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)


class Transformer(nn.Module):
    """Llama 2 language model: trunk + untied `output` projection to the vocabulary."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        build_trunk(self, args)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        init_weights(self, args.n_layers)

    def forward_hidden(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-normed hidden states [B, T, dim]."""
        return trunk_forward(self, tokens, positions, segment_ids, attn_mask)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, T, vocab_size]."""
        return self.output(self.forward_hidden(tokens, positions, segment_ids, attn_mask))


class ScalarModel(nn.Module):
    """Reward / value model: the same trunk with a scalar `score` head instead of `output`
    (paper section 3.2.2: the RM is the chat model with the next-token head replaced by a regression head).
    """

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        build_trunk(self, args)
        self.score = nn.Linear(args.dim, 1, bias=False)
        init_weights(self, args.n_layers)

    def forward_hidden(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-normed hidden states [B, T, dim]."""
        return trunk_forward(self, tokens, positions, segment_ids, attn_mask)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One scalar per position [B, T]; reward models read the last answer token."""
        return self.score(self.forward_hidden(tokens, positions, segment_ids, attn_mask)).squeeze(-1)  # [B, T]


def param_count(args: ModelArgs, scalar: bool = False) -> int:
    """Number of parameters, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = ScalarModel(args) if scalar else Transformer(args)
    return sum(p.numel() for p in model.parameters())
