"""The size table: the paper's shapes and exact parameter counts, counted on the meta device."""

import random

import pytest

from model import SIZES, ModelArgs, param_count
from model.args import ffn_args_for_width, ffn_hidden_dim


@pytest.mark.parametrize(
    "size, ffn, count",
    [
        # Llama 2 7B/13B/70B (paper Table 1; counts of the released checkpoints)
        ("7b", 11008, 6_738_415_616),
        ("13b", 13824, 13_015_864_320),
        ("70b", 28672, 68_976_648_192),
    ],
)
def test_paper_sizes_have_exact_ffn_width_and_param_count(size: str, ffn: int, count: int) -> None:
    args = ModelArgs.from_size(size)
    assert args.ffn_hidden_dim == ffn
    assert (args.vocab_size, args.max_seq_len, args.norm_eps, args.rope_theta) == (32000, 4096, 1e-5, 10000.0)
    assert args.head_dim == 128
    # 70B is ~276 GB in fp32: this only passes on a 24 GiB machine because nothing is allocated.
    assert param_count(args) == count


def test_70b_uses_grouped_query_attention() -> None:
    assert (ModelArgs.from_size("70b").n_heads, ModelArgs.from_size("70b").n_kv_heads) == (64, 8)


def test_tiny_has_gqa_and_about_three_million_parameters() -> None:
    args = ModelArgs.from_size("tiny")
    assert args.n_heads // args.n_kv_heads == 4
    # embeddings 2*1024*256 + 4 layers * (attn 256*(256+64+64+256) + ffn 3*256*704 + 2*256) + 256
    assert param_count(args) == 2 * 1024 * 256 + 4 * (256 * 640 + 3 * 256 * 704 + 512) + 256 == 3_344_640
    assert param_count(args, scalar=True) == 3_344_640 - 1024 * 256 + 256


def test_ffn_width_rule_examples() -> None:
    # h = int(2*4*dim/3) = 170 for dim 64; rounded up to 16 -> 176; with multiplier 1.3: int(221.0) -> 224
    assert ffn_hidden_dim(64, 16, None) == 176
    assert ffn_hidden_dim(64, 16, 1.3) == 224
    assert ffn_hidden_dim(64, 1, None) == 170


def test_ffn_width_inversion_is_exact() -> None:
    for size in SIZES.values():
        width = ffn_hidden_dim(size["dim"], size["multiple_of"], size.get("ffn_dim_multiplier"))
        assert ffn_args_for_width(size["dim"], width) == (size["multiple_of"], size.get("ffn_dim_multiplier"))
    rng = random.Random(0)
    for _ in range(2000):
        dim, width = rng.randint(1, 8192), rng.randint(1, 40000)
        multiple_of, mult = ffn_args_for_width(dim, width)
        assert ffn_hidden_dim(dim, multiple_of, mult) == width, (dim, width)
