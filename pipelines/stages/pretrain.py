"""Stage 1: train the SentencePiece tokenizer and the base model on the world's text (LLAMA2_SPEC.md s.3)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from model import ModelArgs, Transformer, param_count, save_pretrained
from model.chat import format_dialog_text
from model.tokenizer import Tokenizer, train_tokenizer
from pipelines.common import learner_group, metrics_logger, train_packed
from pipelines.config import Config
from pipelines.data import read_table
from pipelines.packing import chunk_stream
from pipelines.rundir import RunDir

log = logging.getLogger(__name__)


def use_pretrained(cfg: Config, run: RunDir) -> dict[str, Any]:
    """A real Llama 2 (`model.init_path`) is the base model: pretraining is Meta's, not redone here.

    The run's `checkpoints/pretrain` becomes a link to it and its tokenizer is copied into the run.
    """
    init = Path(cfg.model.init_path).resolve()
    if not (init / "config.json").exists() and not (init / "params.json").exists():
        raise FileNotFoundError(f"model.init_path={init}: no config.json (HF format) or params.json (Meta format)")
    tok_src = Path(cfg.model.tokenizer_path) if cfg.model.tokenizer_path else init / "tokenizer.model"
    if not tok_src.exists():
        raise FileNotFoundError(f"{tok_src}: tokenizer.model not found; set model.tokenizer_path")
    Tokenizer(tok_src).save(run.tokenizer)
    link = run.checkpoint("pretrain")
    if link.is_symlink() or link.exists():
        if link.resolve() != init:
            raise FileExistsError(f"{link} exists and is not a link to model.init_path={init}")
    else:
        link.symlink_to(init, target_is_directory=True)
    return {"init_path": str(init), "pretrained": True}


def run(cfg: Config, run: RunDir) -> dict[str, Any]:
    pc = cfg.pretrain
    if cfg.model.init_path:
        return use_pretrained(cfg, run)
    # 1. the corpus (validated on read)
    docs = read_table(run.require(run.data / "pretrain.parquet", "data"), "text")
    texts = [d["text"] for d in docs]
    # 2. tokenizer with Llama 2's settings (split digits, byte fallback, no pad id); the SFT dialogues
    #    rendered in the chat format join its corpus so "[INST]", "[/INST]" and "<<SYS>>" get pieces
    #    (else their brackets fall back to bytes: ~14 tokens per turn). They are not pretraining text.
    sft_rows = read_table(run.require(run.data / "sft.parquet", "data"), "dialogues")
    chat = [format_dialog_text(d["messages"], bos="", eos="") for d in sft_rows]
    tok = train_tokenizer([*texts, *chat], run.tokenizer, vocab_size=pc.vocab_size)
    # 3. one token stream of [BOS] doc [EOS] ..., cut into rows (plain causal attention, as Llama 2)
    stream: list[int] = []
    for t in texts:
        stream.extend(tok.encode(t, bos=True, eos=True))
    rows = chunk_stream(stream, pc.seq_len)
    log.info("pretrain corpus: %d documents, %d tokens, %d rows of %d", len(texts), len(stream), len(rows), pc.seq_len)
    # 4. a randomly initialised Llama 2 of the configured size, saved so the learner loads it like any checkpoint
    args = ModelArgs.from_size(cfg.model.size, vocab_size=tok.vocab_size, max_seq_len=cfg.model.max_seq_len)
    with torch.random.fork_rng():  # the initial weights follow `seed` (before: a new draw in every run)
        torch.manual_seed(cfg.seed)
        model = Transformer(args)
    init_dir = save_pretrained(model, run.checkpoint("init"), tokenizer=tok)
    # 5. train on the learner group
    metrics = metrics_logger(cfg, run)
    group = learner_group(cfg, "pretrain", init_dir, pc.optim, cfg.resources.policy)
    try:
        epochs = pc.steps * pc.batch_size / len(rows)
        stats = train_packed(group, rows, epochs=epochs, batch_size=pc.batch_size, stage="pretrain",
                             metrics=metrics, seed=cfg.seed, use_segments=False, max_steps=pc.steps)
        group.run("save", str(run.checkpoint("pretrain")), str(run.tokenizer))
    finally:
        group.shutdown()
        metrics.close()
    return {"documents": len(texts), "tokens": len(stream), "epochs": round(epochs, 3),
            "params": param_count(args),
            **{f"final_{k}": v for k, v in stats.items() if isinstance(v, float)}}
