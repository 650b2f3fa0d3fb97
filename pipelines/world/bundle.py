"""Write the world's whole dataset bundle as Parquet through the data layer, plus summary.json.

    python -m pipelines.world.bundle --out DIR [--seed N] [--scale F]

Files (data-layer kind in brackets):
  pretrain.parquet [text]                 the world's language, plain prose
  sft.parquet [dialogues]                 SFT demonstrations (source "world_sft")
  helpfulness_pairs.parquet [preferences] helpfulness comparisons with rating levels
  safety_pairs.parquet [preferences]      safety comparisons with rating levels and safety labels
  rl_prompts.parquet [prompts]            RL prompts, split "train"
  eval_prompts.parquet [prompts]          held-out single-turn prompts, split "eval"
  eval_dialogues.parquet [dialogues]      held-out multi-turn constraint dialogues (source
                                          "world_eval_dialogue"): dialogue rows whose user turns an
                                          evaluator replays; meta holds every turn's answer key
  gatt_dialogues.parquet [dialogues]      Ghost Attention seeds (source "world_gatt")
  summary.json                            counts per dataset, family/category, rating, safety label,
                                          and what was skipped or dropped
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from pipelines.data import write_table
from pipelines.world.config import BundleConfig
from pipelines.world.generate import GENERATORS, generate_dataset

log = logging.getLogger(__name__)


def write_bundle(out_dir: str | os.PathLike[str], config: BundleConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """Generate and write every dataset into `out_dir`; returns the summary (also in summary.json)."""
    config = config or BundleConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    datasets: dict[str, Any] = {}
    for name in GENERATORS:
        data = generate_dataset(name, config, seed)
        path = write_table(data.rows, out / f"{name}.parquet", data.kind)
        log.info("world bundle: wrote %d rows to %s", len(data.rows), path)
        datasets[name] = {"file": path.name, "kind": data.kind, "rows": len(data.rows), "stats": data.stats}
    summary = {"seed": seed, "config": dataclasses.asdict(config), "datasets": datasets}
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out / "summary.json")
    return summary


def _counts_line(label: str, counts: dict[str, int]) -> str:
    return f"  {label:<16} " + ", ".join(f"{k}={v}" for k, v in counts.items())


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table of the bundle: rows per dataset, then the breakdowns and skip/drop counts."""
    lines = [f"assistant-world bundle (seed {summary['seed']})", f"  {'dataset':<20}{'kind':<13}{'rows':>7}"]
    for name, d in summary["datasets"].items():
        lines.append(f"  {name:<20}{d['kind']:<13}{d['rows']:>7}")
    sets = summary["datasets"]
    for name in ("rl_prompts", "eval_prompts"):
        lines += [f"{name} by kind/task:", _counts_line("tasks", sets[name]["stats"]["tasks"])]
    lines += ["sft user turns by task:", _counts_line("tasks", sets["sft"]["stats"]["turns"]),
              _counts_line("other", {k: sets["sft"]["stats"][k] for k in ("noisy_answers", "with_constraints")})]
    for name in ("helpfulness_pairs", "safety_pairs"):
        s = sets[name]["stats"]
        lines += [f"{name}:", _counts_line("ratings", s["ratings"]), _counts_line("tasks", s["tasks"])]
        if s["safety_labels"]:
            lines.append(_counts_line("safety labels", s["safety_labels"]))
        lines.append(_counts_line("not kept", {"skipped_zero_gap": s["skipped_zero_gap"],
                                               "dropped_unsafe_chosen": s["dropped_unsafe_chosen"],
                                               "flipped_kept": s["flipped"]}))
    for name in ("gatt_dialogues", "eval_dialogues"):
        lines += [f"{name} constraints:", _counts_line("kinds", sets[name]["stats"]["constraint_kinds"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the assistant world's dataset bundle (Parquet + summary.json).")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every dataset size by this factor")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = BundleConfig().scaled(args.scale) if args.scale != 1.0 else BundleConfig()
    summary = write_bundle(args.out, config, args.seed)
    print(format_summary(summary))


if __name__ == "__main__":
    main()
