"""HF-format checkpoint IO: parity with transformers' Llama in both directions, sharding, atomic
replacement, tokenizer files, and clear errors for bad checkpoints."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from model import (
    CheckpointError,
    ModelArgs,
    ScalarModel,
    Tokenizer,
    Transformer,
    hf_state_dict,
    load_hf_state_dict,
    load_pretrained,
    save_pretrained,
    train_tokenizer,
)
from tests.model.weights import randomized

V = 128
# MHA, GQA, MQA; non-default eps and theta in two of them so that a leaked HF default
# (rms_norm_eps 1e-6, rope_theta 10000) would show in the logits.
CONFIGS = {
    "mha": dict(n_heads=4, n_kv_heads=4, norm_eps=1e-5, rope_theta=10000.0),
    "gqa": dict(n_heads=4, n_kv_heads=2, norm_eps=0.05, rope_theta=500.0),
    "mqa": dict(n_heads=4, n_kv_heads=1, norm_eps=0.02, rope_theta=2000.0),
}


def tiny_args(**overrides) -> ModelArgs:
    fields = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=V, multiple_of=16, max_seq_len=64)
    return ModelArgs(**{**fields, **overrides})




def tokens(batch: int = 2, length: int = 20, seed: int = 0) -> torch.Tensor:
    # ids >= 3: id 0 is the pad id of the scalar model's HF config
    return torch.randint(3, V, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", CONFIGS)
def test_project_to_transformers_logits_match(tmp_path: Path, name: str) -> None:
    args = tiny_args(**CONFIGS[name])
    model = randomized(Transformer(args))
    save_pretrained(model, tmp_path / "ckpt")
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "ckpt", dtype=torch.float32, attn_implementation="eager").eval()
    assert hf.config.rms_norm_eps == args.norm_eps
    assert hf.config.rope_parameters["rope_theta"] == args.rope_theta
    assert hf.config.max_position_embeddings == args.max_seq_len
    assert hf.config.num_key_value_heads == args.n_kv_heads
    x = tokens()
    with torch.no_grad():
        diff = (model(x) - hf(x).logits).abs().max().item()
    assert diff < 1e-4


@pytest.mark.parametrize("name", CONFIGS)
def test_transformers_to_project_logits_match(tmp_path: Path, name: str) -> None:
    c = CONFIGS[name]
    config = LlamaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
        num_attention_heads=c["n_heads"], num_key_value_heads=c["n_kv_heads"], rms_norm_eps=c["norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": c["rope_theta"]}, max_position_embeddings=64,
    )
    hf = randomized(LlamaForCausalLM(config), seed=1)
    hf.save_pretrained(tmp_path / "hf")
    model = load_pretrained(tmp_path / "hf")
    assert isinstance(model, Transformer)
    assert model.args == tiny_args(**c)
    x = tokens(seed=1)
    with torch.no_grad():
        diff = (model(x) - hf(x).logits).abs().max().item()
    assert diff < 1e-4


def test_scalar_model_matches_sequence_classification_both_ways(tmp_path: Path) -> None:
    model = randomized(ScalarModel(tiny_args()), seed=2)
    save_pretrained(model, tmp_path / "rm")
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config["num_labels"] == 1
    hf = LlamaForSequenceClassification.from_pretrained(tmp_path / "rm", dtype=torch.float32).eval()
    x = tokens(batch=3, seed=2)
    with torch.no_grad():
        ours_last = model(x)[:, -1]  # [B]
        assert (ours_last - hf(x).logits[:, 0]).abs().max().item() < 1e-4
    hf.save_pretrained(tmp_path / "rm_hf")
    back = load_pretrained(tmp_path / "rm_hf")
    assert isinstance(back, ScalarModel)
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-6)


def test_config_has_llama2_values_not_hf_defaults(tmp_path: Path) -> None:
    args = ModelArgs.from_size("tiny")
    save_pretrained(Transformer(args), tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    expected = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "intermediate_size": 704,
        "num_attention_heads": 8, "num_key_value_heads": 2, "num_hidden_layers": 4, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 512, "vocab_size": 1024, "bos_token_id": 1,
        "eos_token_id": 2, "pad_token_id": None, "hidden_act": "silu", "tie_word_embeddings": False,
        "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32", "head_dim": 32,
    }
    assert {k: cfg[k] for k in expected} == expected


def test_hf_state_dict_names() -> None:
    sd = hf_state_dict(Transformer(tiny_args(n_layers=1)))
    assert set(sd) == {
        "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
        "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
        "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight",
    }
    model = Transformer(tiny_args(n_layers=1))
    assert torch.equal(hf_state_dict(model)["model.layers.0.mlp.gate_proj.weight"], model.layers[0].feed_forward.w1.weight)
    assert "score.weight" in hf_state_dict(ScalarModel(tiny_args(n_layers=1)))


def test_sharded_save_loads_in_project_and_transformers(tmp_path: Path) -> None:
    model = randomized(Transformer(tiny_args()), seed=3)
    save_pretrained(model, tmp_path / "s", max_shard_size=40_000)  # ~170 kB of fp32 weights
    shards = sorted(p.name for p in (tmp_path / "s").glob("*.safetensors"))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (tmp_path / "s" / "model.safetensors").exists()
    index = json.loads((tmp_path / "s" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(hf_state_dict(model))
    x = tokens(seed=3)
    back = load_pretrained(tmp_path / "s")
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "s", dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
        assert (hf(x).logits - model(x)).abs().max().item() < 1e-4


def test_save_replaces_existing_atomically_and_keeps_old_on_failure(tmp_path: Path) -> None:
    first, second = randomized(Transformer(tiny_args()), 4), randomized(Transformer(tiny_args()), 5)
    target = tmp_path / "ckpt"
    save_pretrained(first, target)
    (target / "stale.txt").write_text("from an earlier save")
    save_pretrained(second, target)
    assert not (target / "stale.txt").exists()
    assert torch.equal(load_pretrained(target).output.weight, second.output.weight)

    class FailingTokenizer:
        def save(self, directory: Path) -> Path:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_pretrained(first, target, tokenizer=FailingTokenizer())
    assert torch.equal(load_pretrained(target).output.weight, second.output.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary siblings left


def test_tokenizer_is_saved_with_the_weights(tmp_path: Path) -> None:
    texts = [f"the assistant answers {i} plus {i + 1} questions" for i in range(200)]
    tok = train_tokenizer(texts, tmp_path / "tok", vocab_size=300)
    save_pretrained(Transformer(tiny_args(vocab_size=300)), tmp_path / "ckpt", tokenizer=tok)
    assert (tmp_path / "ckpt" / "tokenizer.model").is_file()
    reloaded = Tokenizer(tmp_path / "ckpt")
    assert reloaded.encode("the assistant answers", bos=True, eos=False) == tok.encode(
        "the assistant answers", bos=True, eos=False
    )


def test_dtype_is_applied_and_recorded(tmp_path: Path) -> None:
    model = randomized(Transformer(tiny_args()), seed=6)
    save_pretrained(model, tmp_path / "f32")
    bf16 = load_pretrained(tmp_path / "f32", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    assert torch.equal(bf16.output.weight, model.output.weight.bfloat16())
    save_pretrained(bf16, tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"


# ---- bad input -------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_pretrained(Transformer(tiny_args()), tmp_path / "ckpt")


def _edit_weights(ckpt: Path, edit) -> None:
    sd = load_file(ckpt / "model.safetensors")
    edit(sd)
    save_file(sd, ckpt / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_is_named(saved: Path) -> None:
    _edit_weights(saved, lambda sd: sd.pop("model.layers.1.mlp.down_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensor 'model\.layers\.1\.mlp\.down_proj\.weight' in .*model\.safetensors"):
        load_pretrained(saved)


def test_unexpected_tensor_is_named(saved: Path) -> None:
    _edit_weights(saved, lambda sd: sd.update({"model.layers.0.self_attn.q_norm.weight": torch.ones(16)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'model\.layers\.0\.self_attn\.q_norm\.weight' in .*model\.safetensors"):
        load_pretrained(saved)


def test_extra_layer_is_unexpected(saved: Path) -> None:
    _edit_weights(saved, lambda sd: sd.update({"model.layers.2.input_layernorm.weight": torch.ones(64)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'model\.layers\.2\.input_layernorm\.weight'"):
        load_pretrained(saved)


def test_wrong_shape_is_named(saved: Path) -> None:
    _edit_weights(saved, lambda sd: sd.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(64, 64)}))
    with pytest.raises(CheckpointError, match=r"'model\.layers\.0\.self_attn\.k_proj\.weight' in .*model\.safetensors has shape \(64, 64\), expected \(32, 64\)"):
        load_pretrained(saved)


def test_load_hf_state_dict_names_the_source() -> None:
    model = Transformer(tiny_args())
    sd = hf_state_dict(Transformer(tiny_args()))
    sd["lm_head.weight"] = torch.zeros(V + 1, 64)
    with pytest.raises(CheckpointError, match=r"'lm_head\.weight' in weights-from-learner has shape \(129, 64\)"):
        load_hf_state_dict(model, sd, source="weights-from-learner")
    del sd["lm_head.weight"]
    with pytest.raises(CheckpointError, match=r"missing tensor 'lm_head\.weight' in weights-from-learner"):
        load_hf_state_dict(model, sd, source="weights-from-learner")


def test_lm_weights_into_scalar_architecture_are_refused(saved: Path) -> None:
    cfg = json.loads((saved / "config.json").read_text())
    cfg |= {"architectures": ["LlamaForSequenceClassification"], "num_labels": 1}
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'lm_head\.weight'"):
        load_pretrained(saved)


def test_missing_config_json(saved: Path) -> None:
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"holds neither config\.json \(HF format\) nor params\.json"):
        load_pretrained(saved)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.pop("rms_norm_eps"), r"lacks required key\(s\) \['rms_norm_eps'\]"),
        (lambda c: c.update(architectures=["MistralForCausalLM"]), r"architectures \['MistralForCausalLM'\] unsupported"),
        (lambda c: c.update(model_type="mistral"), r"model_type 'mistral' unsupported"),
        (lambda c: c.update(hidden_act="gelu"), r"hidden_act='gelu' unsupported"),
        (lambda c: c.update(rope_scaling={"rope_type": "linear", "factor": 2.0}), r"rope_scaling .* unsupported"),
        (lambda c: c.update(rope_theta=500.0), r"rope_theta and rope_parameters\.rope_theta disagree"),
        (lambda c: c.update(num_key_value_heads=3), r"n_heads \(4\) must be divisible by n_kv_heads \(3\)"),
    ],
)
def test_bad_config_is_named(saved: Path, edit, message: str) -> None:
    cfg = json.loads((saved / "config.json").read_text())
    edit(cfg)
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json.*" + message):
        load_pretrained(saved)


def test_pickled_files_are_refused(saved: Path, tmp_path: Path) -> None:
    model_sd = hf_state_dict(Transformer(tiny_args()))
    (saved / "model.safetensors").unlink()
    torch.save(model_sd, saved / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pickled weights \['pytorch_model\.bin'\] are refused"):
        load_pretrained(saved)
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: pickled checkpoints are refused"):
        load_pretrained(saved / "pytorch_model.bin")
    bare = tmp_path / "bare"
    bare.mkdir()
    torch.save(model_sd, bare / "model.pt")
    with pytest.raises(CheckpointError, match=r"pickled files \['model\.pt'\] are refused"):
        load_pretrained(bare)


def test_sharded_index_pointing_to_missing_shard(tmp_path: Path) -> None:
    save_pretrained(Transformer(tiny_args()), tmp_path / "s", max_shard_size=40_000)
    index = json.loads((tmp_path / "s" / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["model.layers.1.mlp.up_proj.weight"]
    (tmp_path / "s" / shard).unlink()
    with pytest.raises(CheckpointError, match=f"lists shard {shard}, which does not exist"):
        load_pretrained(tmp_path / "s")
