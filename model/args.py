"""Llama 2 model hyper-parameters and the size table (LLAMA2_SPEC.md section 1, paper Table 1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelArgs:
    """Shape of a Llama 2 transformer; field names follow Meta's `ModelArgs` (llama/model.py)."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    multiple_of: int
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 4096

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_hidden_dim(self) -> int:
        """SwiGLU width: 2/3 of 4*dim (to keep FLOPs of a 4*dim GELU MLP), scaled, rounded up."""
        return ffn_hidden_dim(self.dim, self.multiple_of, self.ffn_dim_multiplier)

    @classmethod
    def from_size(cls, name: str, **overrides: Any) -> ModelArgs:
        """Args of a named size (`tiny`, `7b`, `13b`, `70b`), with fields replaced by `overrides`."""
        if name not in SIZES:
            raise ValueError(f"unknown model size {name!r}; expected one of {sorted(SIZES)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown ModelArgs field(s) {unknown} for size {name!r}; expected a subset of {sorted(known)}")
        return cls(**{**SIZES[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ffn_hidden_dim(dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
    """Meta's FeedForward width rule: h = int(2*4*dim/3), h = int(mult*h), round up to multiple_of."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def ffn_args_for_width(dim: int, width: int) -> tuple[int, float | None]:
    """(multiple_of, ffn_dim_multiplier) such that `ffn_hidden_dim` gives exactly `width`.

    HF and other formats store the FFN width itself (`intermediate_size`), not Meta's rule inputs.
    Prefer the largest power of two that reproduces `width` without a multiplier (7B/13B give 256),
    else the largest power of two dividing `width` with the multiplier that lands on it (70B: 4096).
    """
    if width <= 0:
        raise ValueError(f"FFN width must be positive, got {width}")
    for size in SIZES.values():  # the paper's own numbers when the shape is one of the table's
        if size["dim"] == dim and ffn_hidden_dim(dim, size["multiple_of"], size.get("ffn_dim_multiplier")) == width:
            return size["multiple_of"], size.get("ffn_dim_multiplier")
    pow2 = width & -width  # largest power of two dividing width
    candidates = [pow2 >> i for i in range(pow2.bit_length())]
    for multiple_of in candidates:
        if ffn_hidden_dim(dim, multiple_of, None) == width:
            return multiple_of, None
    base = int(2 * (4 * dim) / 3)
    for multiple_of in candidates + [width]:
        for mult in (width / base, (width + 0.5) / base):
            if ffn_hidden_dim(dim, multiple_of, mult) == width:
                return multiple_of, mult
    raise ValueError(f"cannot express FFN width {width} for dim {dim} with Meta's width rule")


def _validate(args: ModelArgs) -> None:
    for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of", "max_seq_len"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"ModelArgs.{name} must be a positive int, got {value!r}")
    for name in ("norm_eps", "rope_theta"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"ModelArgs.{name} must be a positive number, got {value!r}")
    mult = args.ffn_dim_multiplier
    if mult is not None and (isinstance(mult, bool) or not isinstance(mult, (int, float)) or mult <= 0):
        raise ValueError(f"ModelArgs.ffn_dim_multiplier must be None or a positive number, got {mult!r}")
    if args.dim % args.n_heads != 0:
        raise ValueError(f"ModelArgs.dim ({args.dim}) must be divisible by n_heads ({args.n_heads})")
    if args.n_heads % args.n_kv_heads != 0:
        raise ValueError(
            f"ModelArgs.n_heads ({args.n_heads}) must be divisible by n_kv_heads ({args.n_kv_heads})"
        )
    if args.head_dim % 2 != 0:
        raise ValueError(f"head_dim = dim / n_heads = {args.head_dim} must be even for RoPE")
    if args.ffn_hidden_dim <= 0:
        raise ValueError(f"FFN width computed from {args} is {args.ffn_hidden_dim}; it must be positive")


# Paper Table 1 / LLAMA2_SPEC.md section 1. `tiny` is the CPU size: GQA on (8 query heads share 2 kv
# heads) so that every test exercises grouped-query attention; ~3M parameters.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(dim=256, n_layers=4, n_heads=8, n_kv_heads=2, vocab_size=1024, multiple_of=64, max_seq_len=512),
    "7b": dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, vocab_size=32000, multiple_of=256, max_seq_len=4096),
    "13b": dict(dim=5120, n_layers=40, n_heads=40, n_kv_heads=40, vocab_size=32000, multiple_of=256, max_seq_len=4096),
    "70b": dict(
        dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, vocab_size=32000, multiple_of=4096,
        ffn_dim_multiplier=1.3, max_seq_len=4096,
    ),
}
