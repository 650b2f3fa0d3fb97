"""Llama 2 architecture: args validation, Meta names, init, causality, RoPE, packed segments."""

import math

import pytest
import torch

from model import ModelArgs, ScalarModel, Transformer
from model.transformer import RMSNorm, segment_positions_and_mask
from tests.model.weights import randomized

ARGS = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=128, multiple_of=16, max_seq_len=64)




@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"dim": 66}, "dim (66) must be divisible by n_heads (4)"),
        ({"n_kv_heads": 3}, "n_heads (4) must be divisible by n_kv_heads (3)"),
        ({"n_layers": 0}, "n_layers must be a positive int"),
        ({"vocab_size": -5}, "vocab_size must be a positive int"),
        ({"multiple_of": 2.5}, "multiple_of must be a positive int"),
        ({"norm_eps": 0.0}, "norm_eps must be a positive number"),
        ({"rope_theta": -1.0}, "rope_theta must be a positive number"),
        ({"ffn_dim_multiplier": 0}, "ffn_dim_multiplier must be None or a positive number"),
        ({"dim": 12, "n_heads": 4, "n_kv_heads": 4}, "head_dim = dim / n_heads = 3 must be even"),
    ],
)
def test_bad_model_args_raise_naming_the_field(overrides: dict, message: str) -> None:
    fields = {**ARGS.to_dict(), **overrides}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelArgs(**fields)


def test_from_size_rejects_unknown_size_and_field() -> None:
    with pytest.raises(ValueError, match="unknown model size '3b'"):
        ModelArgs.from_size("3b")
    with pytest.raises(ValueError, match=r"unknown ModelArgs field\(s\) \['hidden'\]"):
        ModelArgs.from_size("tiny", hidden=3)
    assert ModelArgs.from_size("tiny", vocab_size=512).vocab_size == 512


def test_module_names_are_metas() -> None:
    names = set(Transformer(ARGS).state_dict())
    per_layer = ["attention.wq", "attention.wk", "attention.wv", "attention.wo", "attention_norm",
                 "feed_forward.w1", "feed_forward.w2", "feed_forward.w3", "ffn_norm"]
    expected = {f"layers.{i}.{n}.weight" for i in range(ARGS.n_layers) for n in per_layer}
    expected |= {"tok_embeddings.weight", "norm.weight", "output.weight"}
    assert names == expected
    scalar = set(ScalarModel(ARGS).state_dict())
    assert scalar == (expected - {"output.weight"}) | {"score.weight"}
    assert ScalarModel(ARGS).score.weight.shape == (1, ARGS.dim)


def test_shapes_follow_gqa_and_ffn_rule() -> None:
    model = Transformer(ARGS)
    attn = model.layers[0].attention
    assert attn.wq.weight.shape == (4 * 16, 64)
    assert attn.wk.weight.shape == attn.wv.weight.shape == (2 * 16, 64)
    # int(2 * 4 * 64 / 3) = 170, rounded up to a multiple of 16 -> 176
    assert model.layers[0].feed_forward.w1.weight.shape == (176, 64)
    assert not any(name.endswith("bias") for name in model.state_dict())


def test_init_is_deterministic_and_scaled() -> None:
    args = ModelArgs(dim=256, n_layers=8, n_heads=4, n_kv_heads=2, vocab_size=512, multiple_of=64)
    torch.manual_seed(3)
    a = Transformer(args)
    torch.manual_seed(3)
    b = Transformer(args)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert a.layers[0].attention.wq.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert a.layers[0].feed_forward.w2.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert a.layers[0].attention.wo.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert torch.equal(a.norm.weight, torch.ones(256))


def test_rmsnorm_is_computed_in_fp32() -> None:
    norm = RMSNorm(8, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    x = torch.randn(3, 8) * 100
    ref = x.double() / torch.sqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight.double()
    assert torch.allclose(norm(x).double(), ref, atol=1e-5)
    x16 = x.bfloat16()
    expected = (x16.float() * torch.rsqrt(x16.float().pow(2).mean(-1, keepdim=True) + 1e-5)).bfloat16()
    assert torch.equal(norm.bfloat16()(x16), expected * norm.weight.bfloat16())


def test_causal_future_tokens_do_not_change_past_logits() -> None:
    model = randomized(Transformer(ARGS))
    x = torch.randint(0, 128, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 7) % 128
    with torch.no_grad():
        lx, ly = model(x), model(y)
    assert torch.allclose(lx[:, :8], ly[:, :8], atol=1e-5)
    assert not torch.allclose(lx[:, 8:], ly[:, 8:], atol=1e-3)


def test_rope_is_relative_a_constant_position_shift_changes_nothing() -> None:
    model = randomized(Transformer(ARGS))
    x = torch.randint(0, 128, (2, 10))
    shifted = torch.arange(10).expand(2, 10) + 17
    with torch.no_grad():
        base, moved = model(x), model(x, positions=shifted)
        reversed_pos = model(x, positions=torch.arange(9, -1, -1).expand(2, 10))
    assert torch.allclose(base, moved, atol=1e-4)
    assert not torch.allclose(base, reversed_pos, atol=1e-2)


def test_segment_positions_restart_and_mask_blocks_other_segments() -> None:
    seg = torch.tensor([[0, 0, 0, 1, 1, 2]])
    pos, mask = segment_positions_and_mask(seg)
    assert pos.tolist() == [[0, 1, 2, 0, 1, 0]]
    expected = torch.tensor(
        [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
         [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool
    )
    assert torch.equal(mask[0, 0], expected)


@pytest.mark.parametrize("cls", [Transformer, ScalarModel])
def test_packed_row_equals_each_example_alone(cls: type) -> None:
    model = randomized(cls(ARGS), seed=1)
    a, b = torch.randint(0, 128, (1, 7)), torch.randint(0, 128, (1, 5))
    packed = torch.cat([a, b], dim=1)  # [1, 12]
    seg = torch.tensor([[0] * 7 + [1] * 5])
    with torch.no_grad():
        out = model(packed, segment_ids=seg)
        alone_a, alone_b = model(a), model(b)
        unpacked = model(packed)
    assert torch.allclose(out[:, :7], alone_a, atol=1e-5)
    assert torch.allclose(out[:, 7:], alone_b, atol=1e-5)
    # Without segment ids the second example sees the first one.
    assert not torch.allclose(unpacked[:, 7:], alone_b, atol=1e-3)


def test_grouped_kv_heads_equal_the_same_heads_repeated() -> None:
    """GQA (2 kv heads for 4 query heads) is the model whose kv projections repeat each kv head twice."""
    gqa = randomized(Transformer(ARGS), seed=2)
    full = Transformer(ModelArgs(**{**ARGS.to_dict(), "n_kv_heads": ARGS.n_heads}))
    state = gqa.state_dict()
    hd, rep = ARGS.head_dim, ARGS.n_heads // ARGS.n_kv_heads
    for name, w in list(state.items()):
        if name.endswith(("attention.wk.weight", "attention.wv.weight")):  # [n_kv*hd, dim] -> [n_heads*hd, dim]
            state[name] = w.view(ARGS.n_kv_heads, hd, -1).repeat_interleave(rep, dim=0).reshape(-1, w.shape[1])
    full.load_state_dict(state)
    tokens = torch.randint(0, 128, (2, 12))
    seg = torch.tensor([[0] * 5 + [1] * 7, [0] * 12])
    with torch.no_grad():
        torch.testing.assert_close(gqa(tokens), full(tokens), atol=1e-5, rtol=0)  # causal path
        torch.testing.assert_close(gqa(tokens, segment_ids=seg), full(tokens, segment_ids=seg), atol=1e-5, rtol=0)


def test_forward_hidden_is_the_shared_trunk() -> None:
    lm = randomized(Transformer(ARGS), seed=2)
    rm = ScalarModel(ARGS).eval()
    trunk = {k: v for k, v in lm.state_dict().items() if k != "output.weight"}
    rm.load_state_dict({**trunk, "score.weight": lm.output.weight[:1]})
    x = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        hidden = lm.forward_hidden(x)
        assert hidden.shape == (2, 9, 64)
        assert torch.allclose(lm(x), lm.output(hidden), atol=1e-6)
        assert torch.allclose(rm(x), lm(x)[..., 0], atol=1e-5)
    assert rm(x).shape == (2, 9)


def test_bad_forward_inputs_raise() -> None:
    model = Transformer(ARGS)
    with pytest.raises(ValueError, match=r"tokens must be an integer tensor \[B, T\]"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"segment_ids must have the shape of tokens \(2, 3\), got \(2, 4\)"):
        model(torch.zeros(2, 3, dtype=torch.long), segment_ids=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"positions must have the shape of tokens"):
        model(torch.zeros(2, 3, dtype=torch.long), positions=torch.zeros(3, dtype=torch.long))
