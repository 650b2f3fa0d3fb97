"""Meta's original Llama 2 checkpoint format: `params.json` + `consolidated.NN.pth`, one per model-parallel rank.

Meta's reference (llama/model.py, fairscale layers) splits each weight across ranks by its parallel
style: column-parallel layers (wq, wk, wv, w1, w3, output) on the output features (dim 0), row-parallel
layers (wo, w2) on the input features (dim 1), and `ParallelEmbedding` (tok_embeddings) on the embedding
dim (dim 1); norms are replicated. Its RoPE rotates interleaved pairs (2i, 2i+1) of each head, while
this project (like HF) rotates (i, i + D/2), so wq/wk rows are permuted on import and export.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from model.args import ModelArgs
from model.atomic import atomic_directory
from model.hf_format import CheckpointError, load_state_dict_strict, read_json_object
from model.transformer import Transformer

log = logging.getLogger(__name__)

META_PARAMS_FILE = "params.json"
_SHARD_RE = re.compile(r"^consolidated\.(\d+)\.pth$")
_COLUMN = ("attention.wq.weight", "attention.wk.weight", "attention.wv.weight",
           "feed_forward.w1.weight", "feed_forward.w3.weight", "output.weight")
_ROW = ("attention.wo.weight", "feed_forward.w2.weight", "tok_embeddings.weight")
# Meta's checkpoints carry the RoPE frequency buffer; it is derived from the params, not a weight.
_DERIVED = ("rope.freqs",)
# Meta's ModelArgs fields that are inference settings, not architecture.
_INFERENCE_ONLY = ("max_batch_size",)
# Llama 2's context length (paper section 2.2); Meta's params.json does not store it.
DEFAULT_MAX_SEQ_LEN = 4096


def _split_dim(name: str) -> int | None:
    """Model-parallel split dim of a weight in Meta's layout, None if replicated."""
    if name.endswith(_COLUMN):
        return 0
    if name.endswith(_ROW):
        return 1
    return None


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder q/k projection rows of each head from pairs (2i, 2i+1) to halves (i, i + D/2)."""
    out_features, dim = w.shape
    head_dim = out_features // n_heads
    w = w.view(n_heads, head_dim // 2, 2, dim)  # [H, D/2, 2, dim]
    return w.transpose(1, 2).reshape(out_features, dim)  # [H*D, dim]


def half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of `interleaved_to_half`."""
    out_features, dim = w.shape
    head_dim = out_features // n_heads
    w = w.view(n_heads, 2, head_dim // 2, dim)  # [H, 2, D/2, dim]
    return w.transpose(1, 2).reshape(out_features, dim)  # [H*D, dim]


def _args_from_params(params: dict[str, Any], vocab_rows: int, source: str) -> ModelArgs:
    known = {"dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of", "ffn_dim_multiplier",
             "norm_eps", "rope_theta", "max_seq_len", *_INFERENCE_ONLY}
    unknown = sorted(set(params) - known)
    if unknown:
        raise CheckpointError(f"{source}: unsupported key(s) {unknown}; Llama 2 params are {sorted(known)}")
    missing = [k for k in ("dim", "n_layers", "n_heads", "multiple_of", "norm_eps") if k not in params]
    if missing:
        raise CheckpointError(f"{source} lacks required key(s) {missing}")
    fields = {k: v for k, v in params.items() if k not in _INFERENCE_ONLY}
    # Meta writes vocab_size -1 ("take it from the tokenizer"); the embedding holds the real size.
    if fields.get("vocab_size", -1) == -1:
        fields["vocab_size"] = vocab_rows
    fields.setdefault("n_kv_heads", fields["n_heads"])
    if fields["n_kv_heads"] is None:
        fields["n_kv_heads"] = fields["n_heads"]
    fields.setdefault("max_seq_len", DEFAULT_MAX_SEQ_LEN)
    try:
        return ModelArgs(**fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: {e}") from e


def _shard_paths(root: Path) -> list[Path]:
    found = {int(m.group(1)): p for p in root.iterdir() if (m := _SHARD_RE.match(p.name))}
    if not found:
        raise CheckpointError(f"{root} has {META_PARAMS_FILE} but no consolidated.NN.pth shard")
    if sorted(found) != list(range(len(found))):
        raise CheckpointError(f"{root}: shards {sorted(found)} are not numbered 0..{len(found) - 1}")
    return [found[i] for i in range(len(found))]


def _merge_shards(shards: list[dict[str, torch.Tensor]], paths: list[Path]) -> dict[str, torch.Tensor]:
    """Undo Meta's model-parallel split: concatenate each weight on its split dim."""
    names = list(shards[0])
    for shard, path in zip(shards[1:], paths[1:]):
        if set(shard) != set(names):
            diff = sorted(set(shard) ^ set(names))
            raise CheckpointError(f"{path} and {paths[0]} hold different tensors (e.g. {diff[0]!r})")
    merged = {}
    for name in names:
        parts = [s[name] for s in shards]
        for part, path in zip(parts[1:], paths[1:]):
            if part.shape != parts[0].shape:
                raise CheckpointError(
                    f"tensor {name!r} has shape {tuple(part.shape)} in {path} but {tuple(parts[0].shape)} in {paths[0]}"
                )
        dim = _split_dim(name)
        if dim is None:
            for part, path in zip(parts[1:], paths[1:]):
                if not torch.equal(part, parts[0]):
                    raise CheckpointError(f"replicated tensor {name!r} differs between {paths[0]} and {path}")
            merged[name] = parts[0]
        else:
            merged[name] = torch.cat(parts, dim=dim)
    return merged


def _load_shard(path: Path) -> dict[str, torch.Tensor]:
    # weights_only=True: tensors and plain containers only; anything else is refused, never run.
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} is refused: it holds objects other than tensors ({e})") from e


def load_meta_checkpoint(path: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> Transformer:
    """Load Meta's format into a Transformer, converting interleaved RoPE rows of wq/wk to rotate-half."""
    root = Path(path)
    params_path = root / META_PARAMS_FILE
    params = read_json_object(params_path)
    paths = _shard_paths(root)
    shards = [_load_shard(p) for p in paths]
    for shard, p in zip(shards, paths):
        if not isinstance(shard, dict) or not all(isinstance(v, torch.Tensor) for v in shard.values()):
            raise CheckpointError(f"{p} is not a flat dict of tensors (Meta's consolidated format)")
    sd = _merge_shards([{k: v for k, v in s.items() if k not in _DERIVED} for s in shards], paths)
    if "tok_embeddings.weight" not in sd:
        raise CheckpointError(f"missing tensor 'tok_embeddings.weight' in {paths[0]}")
    args = _args_from_params(params, sd["tok_embeddings.weight"].shape[0], str(params_path))
    sd = _rope_convert(sd, args, interleaved_to_half, str(root))
    with torch.device("meta"):
        model = Transformer(args)
    where = str(paths[0]) if len(paths) == 1 else f"{root} (consolidated.*.pth)"
    load_state_dict_strict(model, {k: v.to(dtype) for k, v in sd.items()}, where)
    log.info("loaded Meta-format checkpoint %s (%d shard(s))", root, len(paths))
    return model


def _rope_convert(
    sd: dict[str, torch.Tensor], args: ModelArgs, convert: Callable[[torch.Tensor, int], torch.Tensor], where: str
) -> dict[str, torch.Tensor]:
    """Apply a RoPE row permutation (`convert(w, n_heads)`) to every wq and wk."""
    out = dict(sd)
    for name, t in sd.items():
        if not name.endswith(("attention.wq.weight", "attention.wk.weight")):
            continue
        heads = args.n_heads if name.endswith("attention.wq.weight") else args.n_kv_heads
        if t.dim() != 2 or t.shape[0] != heads * args.head_dim:
            raise CheckpointError(
                f"tensor {name!r} in {where} has shape {tuple(t.shape)}, expected ({heads * args.head_dim}, {args.dim})"
            )
        out[name] = convert(t, heads)
    return out


def export_meta_checkpoint(model: Transformer, path: str | os.PathLike[str], n_shards: int = 1) -> Path:
    """Write `model` in Meta's format (params.json + consolidated.NN.pth, interleaved RoPE), atomically."""
    if not isinstance(model, Transformer):
        raise TypeError(f"Meta's format holds language models only, got {type(model).__name__}")
    args: ModelArgs = model.args
    if n_shards < 1 or args.n_kv_heads % n_shards or args.ffn_hidden_dim % n_shards or args.dim % n_shards:
        raise ValueError(
            f"cannot split into {n_shards} model-parallel shards: n_kv_heads ({args.n_kv_heads}), FFN width "
            f"({args.ffn_hidden_dim}) and dim ({args.dim}) must all be divisible by it"
        )
    if args.vocab_size % n_shards:
        raise ValueError(f"cannot split output ({args.vocab_size} rows) into {n_shards} shards")
    sd = _rope_convert({k: v.detach() for k, v in model.state_dict().items()}, args, half_to_interleaved, "model")
    params = {k: v for k, v in args.to_dict().items() if not (k == "ffn_dim_multiplier" and v is None)}
    with atomic_directory(path) as tmp:
        (tmp / META_PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n")
        for rank in range(n_shards):
            shard = {}
            for name, t in sd.items():
                dim = _split_dim(name)
                # clone: a saved view would drag the whole storage into every shard file
                shard[name] = t.clone() if dim is None else t.chunk(n_shards, dim=dim)[rank].clone()
            torch.save(shard, tmp / f"consolidated.{rank:02d}.pth")
    return Path(path)
