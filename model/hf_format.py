"""HF Llama format: parameter names, config.json fields, strict state-dict loading.

The project already uses the rotate-half RoPE layout of HF checkpoints, so tensors map one to one
(no q/k permutation); only names differ. HF `LlamaConfig` defaults (rms_norm_eps 1e-6, 2048
positions) are not Llama 2's, so every field is written explicitly from `ModelArgs`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.args import ModelArgs, ffn_args_for_width
from model.transformer import ScalarModel, Transformer

log = logging.getLogger(__name__)

LM_ARCH = "LlamaForCausalLM"
SCALAR_ARCH = "LlamaForSequenceClassification"
BOS_ID, EOS_ID = 1, 2
# Llama 2 has no pad id, but LlamaForSequenceClassification pools the rightmost token != pad_token_id
# and refuses batches without one. <unk> (id 0) never ends an answer (byte fallback), so with pad = 0
# HF pools the same last token that the project's reward model reads.
SCALAR_PAD_ID = 0


class CheckpointError(ValueError):
    """A checkpoint file or directory does not hold what the project expects."""


_TOP_LEVEL = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "score.weight": "score.weight",
}
_PER_LAYER = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_FROM_HF_TOP = {hf: ours for ours, hf in _TOP_LEVEL.items()}
_FROM_HF_LAYER = {hf: ours for ours, hf in _PER_LAYER.items()}
_LAYER_RE = re.compile(r"^layers\.(\d+)\.(.+)$")
_HF_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
# Older transformers (4.31) stored the RoPE frequencies as a buffer; it is derived, not a weight.
_HF_INV_FREQ = "self_attn.rotary_emb.inv_freq"


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (config.json, params.json); CheckpointError names the file."""
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def to_hf_name(name: str) -> str:
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    m = _LAYER_RE.match(name)
    if m and m.group(2) in _PER_LAYER:
        return f"model.layers.{m.group(1)}.{_PER_LAYER[m.group(2)]}"
    raise KeyError(f"project parameter {name!r} has no HF Llama name")


def from_hf_name(name: str) -> str | None:
    """Project name of an HF tensor name, or None if it is not a Llama weight."""
    if name in _FROM_HF_TOP:
        return _FROM_HF_TOP[name]
    m = _HF_LAYER_RE.match(name)
    if m and m.group(2) in _FROM_HF_LAYER:
        return f"layers.{m.group(1)}.{_FROM_HF_LAYER[m.group(2)]}"
    return None


def hf_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under HF Llama names (e.g. for saving or weight sync to vLLM)."""
    return {to_hf_name(name): t.detach() for name, t in model.state_dict().items()}


def load_state_dict_strict(
    model: nn.Module,
    sd: Mapping[str, torch.Tensor],
    where: Mapping[str, str] | str,
    display: Callable[[str], str] = str,
) -> None:
    """Load project-named tensors; any missing, unexpected or mis-shaped tensor is a CheckpointError.

    `where` names the file each key came from (or one file for all); `display` turns a project name
    into the name shown in messages (the on-disk name). A model on the meta device takes the tensors
    as they are (assign), so large checkpoints are not copied twice.
    """

    def loc(key: str) -> str:
        return where if isinstance(where, str) else where.get(key, "<unknown file>")

    expected = model.state_dict()
    unexpected = [k for k in sd if k not in expected]
    if unexpected:
        k = unexpected[0]
        raise CheckpointError(f"unexpected tensor {display(k)!r} in {loc(k)} ({len(unexpected)} unexpected in total)")
    missing = [display(k) for k in expected if k not in sd]
    if missing:
        first = next(k for k in expected if k not in sd)
        raise CheckpointError(f"missing tensor {missing[0]!r} in {loc(first)} ({len(missing)} missing: {missing[:5]})")
    for k, t in sd.items():
        if tuple(t.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"tensor {display(k)!r} in {loc(k)} has shape {tuple(t.shape)}, "
                f"expected {tuple(expected[k].shape)} from the config"
            )
    on_meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(dict(sd), strict=True, assign=on_meta)


def load_hf_state_dict(
    model: nn.Module, sd: Mapping[str, torch.Tensor], source: Mapping[str, str] | str = "<state dict>"
) -> None:
    """Strictly load HF-named tensors into `model`; `source` names the file (or a file per HF key)."""
    ours: dict[str, torch.Tensor] = {}
    where: dict[str, str] = {}
    for hf_name, tensor in sd.items():
        loc = source if isinstance(source, str) else source.get(hf_name, "<unknown file>")
        if hf_name.endswith(_HF_INV_FREQ):
            _check_inv_freq(model, hf_name, tensor, loc)
            continue
        name = from_hf_name(hf_name)
        if name is None:
            raise CheckpointError(f"unexpected tensor {hf_name!r} in {loc}: not a Llama weight name")
        ours[name], where[name] = tensor, loc
    if isinstance(source, str):
        elsewhere = source
    else:  # a sharded checkpoint: a missing tensor is missing from all of its shards
        parents = sorted({str(Path(f).parent) for f in source.values()})
        elsewhere = f"the shards in {', '.join(parents)}" if parents else "<empty checkpoint>"
    for name in model.state_dict():
        where.setdefault(name, elsewhere)
    load_state_dict_strict(model, ours, where, display=to_hf_name)


def _check_inv_freq(model: nn.Module, hf_name: str, tensor: torch.Tensor, loc: str) -> None:
    """A stored RoPE frequency buffer must agree with the config's rope_theta; it is then dropped."""
    args: ModelArgs = model.args
    d = args.head_dim
    expected = 1.0 / (args.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    if tensor.shape != expected.shape or not torch.allclose(tensor.float(), expected, rtol=1e-3):
        raise CheckpointError(f"tensor {hf_name!r} in {loc} disagrees with rope_theta={args.rope_theta} of the config")


def hf_config(model: nn.Module) -> dict[str, Any]:
    """config.json for a Transformer (LlamaForCausalLM) or ScalarModel (LlamaForSequenceClassification)."""
    args: ModelArgs = model.args
    scalar = isinstance(model, ScalarModel)
    if not scalar and not isinstance(model, Transformer):
        raise TypeError(f"expected a Transformer or ScalarModel, got {type(model).__name__}")
    dtype = next(model.parameters()).dtype
    cfg: dict[str, Any] = {
        "architectures": [SCALAR_ARCH if scalar else LM_ARCH],
        "model_type": "llama",
        "hidden_size": args.dim,
        "intermediate_size": args.ffn_hidden_dim,
        "num_attention_heads": args.n_heads,
        "num_key_value_heads": args.n_kv_heads,
        "num_hidden_layers": args.n_layers,
        "head_dim": args.head_dim,
        "rms_norm_eps": args.norm_eps,
        "rope_theta": args.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": args.rope_theta},
        "rope_scaling": None,
        "max_position_embeddings": args.max_seq_len,
        "vocab_size": args.vocab_size,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": SCALAR_PAD_ID if scalar else None,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    if scalar:
        cfg |= {"num_labels": 1, "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    return cfg


_REQUIRED_KEYS = (
    "architectures", "model_type", "hidden_size", "intermediate_size", "num_attention_heads",
    "num_hidden_layers", "vocab_size", "rms_norm_eps", "max_position_embeddings",
)
# Values of HF Llama options the Llama 2 architecture does not have; anything else is refused.
_FIXED = {"hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False}


def args_from_hf_config(cfg: Mapping[str, Any], source: str) -> tuple[ModelArgs, bool]:
    """(ModelArgs, is_scalar) from an HF Llama config.json; unsupported settings raise CheckpointError."""
    missing = [k for k in _REQUIRED_KEYS if k not in cfg]
    if missing:
        raise CheckpointError(f"{source} lacks required key(s) {missing}")
    archs = cfg["architectures"]
    if archs not in ([LM_ARCH], [SCALAR_ARCH]):
        raise CheckpointError(f"{source}: architectures {archs!r} unsupported; expected [{LM_ARCH!r}] or [{SCALAR_ARCH!r}]")
    if cfg["model_type"] != "llama":
        raise CheckpointError(f"{source}: model_type {cfg['model_type']!r} unsupported; expected 'llama'")
    for key, value in _FIXED.items():
        if key in cfg and cfg[key] != value:
            raise CheckpointError(f"{source}: {key}={cfg[key]!r} unsupported; Llama 2 has {key}={value!r}")
    scalar = archs == [SCALAR_ARCH]
    n_labels = cfg.get("num_labels") or len(cfg.get("id2label") or {})
    if scalar and n_labels != 1:
        raise CheckpointError(f"{source}: a {SCALAR_ARCH} checkpoint must have num_labels 1 (a scalar score)")
    dim, n_heads = cfg["hidden_size"], cfg["num_attention_heads"]
    # HF's documented default: num_key_value_heads absent means multi-head attention.
    n_kv_heads = cfg.get("num_key_value_heads") or n_heads
    multiple_of, mult = ffn_args_for_width(dim, cfg["intermediate_size"])
    try:
        args = ModelArgs(
            dim=dim, n_layers=cfg["num_hidden_layers"], n_heads=n_heads, n_kv_heads=n_kv_heads,
            vocab_size=cfg["vocab_size"], multiple_of=multiple_of, ffn_dim_multiplier=mult,
            norm_eps=cfg["rms_norm_eps"], rope_theta=_rope_theta(cfg, source),
            max_seq_len=cfg["max_position_embeddings"],
        )
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from e
    head_dim = cfg.get("head_dim")
    if head_dim is not None and head_dim != args.head_dim:
        raise CheckpointError(f"{source}: head_dim {head_dim} != hidden_size / num_attention_heads = {args.head_dim}")
    return args, scalar


def _rope_theta(cfg: Mapping[str, Any], source: str) -> float:
    """rope_theta from `rope_parameters` (transformers 5) or the top-level key (transformers 4).

    Absent from both (e.g. Meta's own Llama-2-*-hf configs) means HF's and Meta's default 10000.
    """
    if cfg.get("rope_scaling") is not None:
        raise CheckpointError(f"{source}: rope_scaling {cfg['rope_scaling']!r} unsupported (Llama 2 has none)")
    params = cfg.get("rope_parameters") or {}
    if params.get("rope_type", "default") != "default":
        raise CheckpointError(f"{source}: rope_parameters {params!r} unsupported; expected rope_type 'default'")
    thetas = {float(v) for v in (params.get("rope_theta"), cfg.get("rope_theta")) if v is not None}
    if len(thetas) > 1:
        raise CheckpointError(f"{source}: rope_theta and rope_parameters.rope_theta disagree: {sorted(thetas)}")
    return thetas.pop() if thetas else 10000.0
