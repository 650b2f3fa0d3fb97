"""Meta's original format (params.json + consolidated.NN.pth): round trips, Meta's RoPE layout and
model-parallel split, and refusals."""

import json
from pathlib import Path

import pytest
import torch

from model import CheckpointError, ModelArgs, ScalarModel, Transformer, export_meta_checkpoint, load_pretrained
from model.transformer import apply_rope, rope_cos_sin
from tests.model.weights import randomized

ARGS = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=128, multiple_of=16, max_seq_len=64,
                 rope_theta=500.0)




@pytest.mark.parametrize("n_shards", [1, 2])
def test_meta_round_trip_gives_the_same_logits(tmp_path: Path, n_shards: int) -> None:
    model = randomized(Transformer(ARGS))
    export_meta_checkpoint(model, tmp_path / "meta", n_shards=n_shards)
    files = sorted(p.name for p in (tmp_path / "meta").iterdir())
    assert files == [f"consolidated.{i:02d}.pth" for i in range(n_shards)] + ["params.json"]
    back = load_pretrained(tmp_path / "meta")
    assert isinstance(back, Transformer) and back.args == ARGS
    x = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        assert (back(x) - model(x)).abs().max().item() < 1e-6


def meta_rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Meta's reference RoPE (llama/model.py apply_rotary_emb): complex rotation of pairs (2i, 2i+1)."""
    B, T, H, D = x.shape
    inv_freq = 1.0 / theta ** (torch.arange(0, D, 2).float() / D)  # [D/2]
    freqs_cis = torch.polar(torch.ones(T, D // 2), torch.outer(torch.arange(T).float(), inv_freq))  # [T, D/2]
    xc = torch.view_as_complex(x.float().reshape(B, T, H, D // 2, 2))  # [B, T, H, D/2]
    return torch.view_as_real(xc * freqs_cis[None, :, None]).flatten(3)  # [B, T, H, D]


def test_exported_wq_wk_follow_metas_interleaved_rope(tmp_path: Path) -> None:
    """Attention scores from the exported weights under Meta's RoPE equal the project's."""
    model = randomized(Transformer(ARGS), seed=1)
    export_meta_checkpoint(model, tmp_path / "meta")
    sd = torch.load(tmp_path / "meta" / "consolidated.00.pth", weights_only=True)
    x = torch.randn(1, 10, 64)
    B, T, H, Hkv, D = 1, 10, 4, 2, 16
    q_meta = meta_rope((x @ sd["layers.0.attention.wq.weight"].T).view(B, T, H, D), ARGS.rope_theta)
    k_meta = meta_rope((x @ sd["layers.0.attention.wk.weight"].T).view(B, T, Hkv, D), ARGS.rope_theta)
    scores_meta = torch.einsum("bthd,bshd->bhts", q_meta, k_meta.repeat_interleave(2, dim=2))  # [B, H, T, T]
    attn = model.layers[0].attention
    cos, sin = rope_cos_sin(torch.arange(T)[None], D, ARGS.rope_theta, torch.float32)
    with torch.no_grad():
        q = apply_rope(attn.wq(x).view(B, T, H, D).transpose(1, 2), cos, sin)  # [B, H, T, D]
        k = apply_rope(attn.wk(x).view(B, T, Hkv, D).transpose(1, 2), cos, sin)  # [B, Hkv, T, D]
    scores = q @ k.repeat_interleave(2, dim=1).transpose(-1, -2)  # [B, H, T, T]
    assert torch.allclose(scores, scores_meta, atol=1e-4)
    assert not torch.allclose(sd["layers.0.attention.wq.weight"], attn.wq.weight)  # rows were permuted


def test_two_shards_split_like_metas_model_parallel_layers(tmp_path: Path) -> None:
    model = Transformer(ARGS)
    export_meta_checkpoint(model, tmp_path / "meta", n_shards=2)
    s0 = torch.load(tmp_path / "meta" / "consolidated.00.pth", weights_only=True)
    s1 = torch.load(tmp_path / "meta" / "consolidated.01.pth", weights_only=True)
    hidden = ARGS.ffn_hidden_dim
    expected = {  # column-parallel on dim 0, row-parallel and ParallelEmbedding on dim 1
        "layers.0.attention.wq.weight": (32, 64), "layers.0.attention.wk.weight": (16, 64),
        "layers.0.attention.wv.weight": (16, 64), "layers.0.attention.wo.weight": (64, 32),
        "layers.0.feed_forward.w1.weight": (hidden // 2, 64), "layers.0.feed_forward.w3.weight": (hidden // 2, 64),
        "layers.0.feed_forward.w2.weight": (64, hidden // 2), "tok_embeddings.weight": (128, 32),
        "output.weight": (64, 64), "norm.weight": (64,), "layers.0.attention_norm.weight": (64,),
    }
    for name, shape in expected.items():
        assert tuple(s0[name].shape) == tuple(s1[name].shape) == shape, name
    assert torch.equal(torch.cat([s0["tok_embeddings.weight"], s1["tok_embeddings.weight"]], 1), model.tok_embeddings.weight)
    assert torch.equal(torch.cat([s0["layers.1.feed_forward.w2.weight"], s1["layers.1.feed_forward.w2.weight"]], 1),
                       model.layers[1].feed_forward.w2.weight)


def test_metas_params_json_conventions(tmp_path: Path) -> None:
    """vocab_size -1, no n_kv_heads (MHA), no rope_theta, the rope.freqs buffer: as in Meta's 7B release."""
    args = ModelArgs(dim=64, n_layers=1, n_heads=4, n_kv_heads=4, vocab_size=96, multiple_of=32, max_seq_len=4096)
    model = randomized(Transformer(args), seed=2)
    root = export_meta_checkpoint(model, tmp_path / "meta")
    (root / "params.json").write_text(json.dumps(
        {"dim": 64, "multiple_of": 32, "n_heads": 4, "n_layers": 1, "norm_eps": 1e-5, "vocab_size": -1}
    ))
    sd = torch.load(root / "consolidated.00.pth", weights_only=True)
    sd["rope.freqs"] = torch.ones(8)
    torch.save(sd, root / "consolidated.00.pth")
    back = load_pretrained(root)
    assert back.args == args
    x = torch.randint(0, 96, (1, 8))
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-6)


def test_meta_refusals(tmp_path: Path) -> None:
    root = export_meta_checkpoint(Transformer(ARGS), tmp_path / "meta", n_shards=2)
    params = json.loads((root / "params.json").read_text())
    (root / "params.json").write_text(json.dumps({**params, "use_scaled_rope": True}))
    with pytest.raises(CheckpointError, match=r"params\.json: unsupported key\(s\) \['use_scaled_rope'\]"):
        load_pretrained(root)
    (root / "params.json").write_text(json.dumps(params))
    s1 = torch.load(root / "consolidated.01.pth", weights_only=True)
    s1["norm.weight"] = s1["norm.weight"] + 1
    torch.save(s1, root / "consolidated.01.pth")
    with pytest.raises(CheckpointError, match=r"replicated tensor 'norm\.weight' differs between .*consolidated\.00\.pth"):
        load_pretrained(root)
    (root / "consolidated.01.pth").rename(root / "consolidated.02.pth")
    with pytest.raises(CheckpointError, match=r"shards \[0, 2\] are not numbered 0\.\.1"):
        load_pretrained(root)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_in_a_consolidated_file_are_never_run(tmp_path: Path) -> None:
    root = export_meta_checkpoint(Transformer(ARGS), tmp_path / "meta")
    torch.save({"tok_embeddings.weight": torch.zeros(1), "x": _Payload()}, root / "consolidated.00.pth")
    with pytest.raises(CheckpointError, match=r"consolidated\.00\.pth is refused: it holds objects other than tensors"):
        load_pretrained(root)


def test_export_refuses_what_meta_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="language models only, got ScalarModel"):
        export_meta_checkpoint(ScalarModel(ARGS), tmp_path / "x")
    with pytest.raises(ValueError, match="cannot split into 4 model-parallel shards: n_kv_heads \\(2\\)"):
        export_meta_checkpoint(Transformer(ARGS), tmp_path / "x", n_shards=4)
    assert not (tmp_path / "x").exists()
