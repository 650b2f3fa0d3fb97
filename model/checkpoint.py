"""Checkpoint IO: HF format (config.json + safetensors, single or sharded) and Meta's format on import.

Only safetensors and Meta's `consolidated.*.pth` (read with `weights_only=True`) are loaded: any other
pickled file (.bin/.pt/.pth/.pkl) could run arbitrary code on load and is refused.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.atomic import atomic_directory
from model.hf_format import (
    CheckpointError,
    args_from_hf_config,
    hf_config,
    hf_state_dict,
    load_hf_state_dict,
    read_json_object,
)
from model.meta_format import META_PARAMS_FILE, load_meta_checkpoint
from model.transformer import ScalarModel, Transformer

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_SIZE = 2 * 1024**3
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class SavesItself(Protocol):
    def save(self, directory: str | Path) -> Path: ...


def save_pretrained(
    model: Transformer | ScalarModel,
    path: str | os.PathLike[str],
    tokenizer: SavesItself | None = None,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
) -> Path:
    """Write an HF-format checkpoint directory atomically (replacing `path` if it exists).

    config.json + model.safetensors, or `model-0000i-of-0000N.safetensors` shards + index when the
    weights exceed `max_shard_size` bytes; plus the tokenizer files if `tokenizer` is given.
    """
    if max_shard_size <= 0:
        raise ValueError(f"max_shard_size must be a positive number of bytes, got {max_shard_size}")
    config = hf_config(model)
    tensors = {k: v.contiguous() for k, v in hf_state_dict(model).items()}
    target = Path(path)
    with atomic_directory(target) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        _write_shards(tensors, tmp, max_shard_size)
        if tokenizer is not None:
            tokenizer.save(tmp)
    log.info("saved %s (%s) to %s", type(model).__name__, config["architectures"][0], target)
    return target


def _write_shards(tensors: dict[str, torch.Tensor], directory: Path, max_shard_size: int) -> None:
    """Greedy split in parameter order; a tensor bigger than the limit gets a shard of its own."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    metadata = {"format": "pt"}  # transformers refuses safetensors files without it
    if len(shards) == 1:
        save_file(shards[0], str(directory / WEIGHTS_FILE), metadata=metadata)
        return
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards, start=1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / fname), metadata=metadata)
        weight_map |= {name: fname for name in shard}
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def load_pretrained(path: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> Transformer | ScalarModel:
    """Load an HF-format (config.json) or Meta-format (params.json) checkpoint directory.

    The class follows config.json `architectures`: LlamaForCausalLM -> Transformer,
    LlamaForSequenceClassification -> ScalarModel. Meta's format always gives a Transformer.
    """
    root = Path(path)
    if root.is_file():
        if root.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"{root}: pickled checkpoints are refused (unpickling can run code); use safetensors")
        raise CheckpointError(f"{root} is a file; expected a checkpoint directory holding {CONFIG_FILE}")
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory {root} does not exist")
    if (root / CONFIG_FILE).is_file():
        return _load_hf(root, dtype)
    if (root / META_PARAMS_FILE).is_file():
        return load_meta_checkpoint(root, dtype)
    pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)
    hint = f"; pickled files {pickles} are refused (unpickling can run code)" if pickles else ""
    raise CheckpointError(f"{root} holds neither {CONFIG_FILE} (HF format) nor {META_PARAMS_FILE} (Meta format){hint}")


def _load_hf(root: Path, dtype: torch.dtype) -> Transformer | ScalarModel:
    config_path = root / CONFIG_FILE
    config = read_json_object(config_path)
    args, scalar = args_from_hf_config(config, str(config_path))
    tensors, source = _read_safetensors(root)
    tensors = {k: v.to(dtype) for k, v in tensors.items()}
    with torch.device("meta"):  # no random init of weights that are about to be replaced
        model = ScalarModel(args) if scalar else Transformer(args)
    load_hf_state_dict(model, tensors, source)
    log.info("loaded %s from %s", type(model).__name__, root)
    return model


def _read_safetensors(root: Path) -> tuple[dict[str, torch.Tensor], dict[str, str] | str]:
    """All tensors of a single-file or sharded checkpoint, and their file (one, or one per tensor)."""
    if (root / WEIGHTS_FILE).is_file():
        files = [WEIGHTS_FILE]
        weight_map = None
    elif (root / INDEX_FILE).is_file():
        weight_map = _read_index(root / INDEX_FILE)
        files = sorted(set(weight_map.values()))
    else:
        pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = f"; pickled weights {pickles} are refused (unpickling can run code)" if pickles else ""
        raise CheckpointError(f"{root} has {CONFIG_FILE} but neither {WEIGHTS_FILE} nor {INDEX_FILE}{hint}")
    tensors: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    for fname in files:
        fpath = root / fname
        if not fpath.is_file():
            raise CheckpointError(f"{root / INDEX_FILE} lists shard {fname}, which does not exist")
        with safe_open(str(fpath), framework="pt") as f:
            for key in f.keys():
                if key in tensors:
                    raise CheckpointError(f"tensor {key!r} appears in both {source[key]} and {fpath}")
                if weight_map is not None and weight_map.get(key) != fname:
                    raise CheckpointError(f"tensor {key!r} in {fpath} is mapped to {weight_map.get(key)} by the index")
                tensors[key], source[key] = f.get_tensor(key), str(fpath)
    if weight_map is not None:
        for key in weight_map.keys() - tensors.keys():
            source[key] = str(root / weight_map[key])
            raise CheckpointError(f"tensor {key!r} listed in {root / INDEX_FILE} is missing from {source[key]}")
    if weight_map is None:  # one file: name it in every message, missing tensors included
        return tensors, str(root / WEIGHTS_FILE)
    return tensors, source


def _read_index(index_path: Path) -> dict[str, str]:
    try:
        index: Any = json.loads(index_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{index_path} is not valid JSON: {e}") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index_path} must hold a 'weight_map' object of tensor name -> shard file")
    for fname in weight_map.values():
        if Path(fname).name != fname or not fname.endswith(".safetensors"):
            raise CheckpointError(f"{index_path} maps to {fname!r}; expected a .safetensors file in the same directory")
    return weight_map
