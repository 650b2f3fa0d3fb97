"""Stage 2: supervised fine-tuning on packed demonstrations, loss on answers only (LLAMA2_SPEC.md s.4)."""
from __future__ import annotations

from typing import Any

from pipelines.common import learner_group, load_tokenizer, metrics_logger, sft_on_dialogs
from pipelines.config import Config
from pipelines.data import read_table
from pipelines.rundir import RunDir


def run(cfg: Config, run: RunDir) -> dict[str, Any]:
    sc = cfg.sft
    tok = load_tokenizer(cfg, run)
    dialogs = [(d["id"], d["messages"]) for d in read_table(run.require(run.data / "sft.parquet", "data"), "dialogues")]
    base = run.require(run.checkpoint("pretrain"), "pretrain")
    metrics = metrics_logger(cfg, run)
    group = learner_group(cfg, "sft", base, sc.optim, cfg.resources.policy)
    try:
        out = sft_on_dialogs(group, tok, dialogs, train_on=sc.train_on, seq_len=sc.seq_len, epochs=sc.epochs,
                             batch_size=sc.batch_size, stage="sft", metrics=metrics, seed=cfg.seed)
        group.run("save", str(run.checkpoint("sft")), str(run.tokenizer))
    finally:
        group.shutdown()
        metrics.close()
    return out
