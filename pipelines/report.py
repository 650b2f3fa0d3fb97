"""report.md / report.json: every stage's evaluation side by side, and whether the method showed
what it should (DESIGN.md, issue acceptance). Nothing is hidden: a claim that does not hold is
reported as not holding. Noise: every checkpoint answers the same held-out prompts, so a change between
two checkpoints is measured per prompt and its noise is the standard error of that paired difference
(the evaluate stage's `paired`); without it, the combined standard error of the two means. "Beyond
noise" means a change larger than twice that standard error. It is prompt-sampling noise for two fixed
models; it does not include the variation between training runs with other seeds."""
from __future__ import annotations

import json
import math
from typing import Any

from pipelines.config import STAGE_ORDER
from pipelines.rundir import RunDir, atomic_write_text

ROWS = ("sft", "rs", "ppo", "gatt", "context_distillation")
COLUMNS = ("helpfulness", "accuracy", "violation_rate", "false_refusal_rate", "adherence/turn1",
           "adherence/turn2", "adherence/turn4", "adherence/turn8", "rm_win_rate_vs_sft", "rm_safety_adversarial")
CHANGE_COLUMNS = ("helpfulness", "violation_rate", "false_refusal_rate", "adherence/turn4", "adherence/turn8",
                  "rm_safety_adversarial")


def _get(ev: dict, name: str, key: str) -> dict | None:
    return ev.get(name, {}).get(key)


def _diff(a: dict | None, b: dict | None) -> tuple[float, float] | None:
    """(a - b, combined standard error)."""
    if not a or not b:
        return None
    return a["mean"] - b["mean"], math.sqrt(a["se"] ** 2 + b["se"] ** 2)


def _change(ev: dict, paired: dict, later: str, earlier: str, metric: str) -> tuple[float, float] | None:
    """(later - earlier, its standard error): the paired per-prompt difference when the evaluation has
    it, else the difference of the means with the combined standard error."""
    d = paired.get(f"{later}-{earlier}", {}).get(metric)
    if d and d.get("n", 0) > 1:
        return d["mean"], d["se"]
    return _diff(_get(ev, later, metric), _get(ev, earlier, metric))


def _check(claim: str, holds: bool | None, detail: str) -> dict[str, Any]:
    return {"claim": claim, "holds": holds, "detail": detail}


def checks(ev: dict, rms: dict, paired: dict | None = None) -> list[dict[str, Any]]:
    out, paired = [], paired or {}
    h = {n: _get(ev, n, "helpfulness") for n in ("sft", "rs", "ppo")}
    if all(h.values()):
        steps = [_change(ev, paired, "rs", "sft", "helpfulness"), _change(ev, paired, "ppo", "rs", "helpfulness")]
        total = _change(ev, paired, "ppo", "sft", "helpfulness")
        ok = all(d >= -2 * se for d, se in steps) and total[0] > 2 * total[1]
        out.append(_check("oracle helpfulness rises SFT -> RS -> PPO (each step up or within noise, total beyond noise)",
                          ok, f"SFT {h['sft']['mean']:.3f}, RS {h['rs']['mean']:.3f}, PPO {h['ppo']['mean']:.3f}; "
                              f"total gain {total[0]:+.3f} vs 2SE {2 * total[1]:.3f}"))
    final = next((n for n in reversed(ROWS) if n in ev), None)
    v0, v1 = _get(ev, "sft", "violation_rate"), _get(ev, final, "violation_rate") if final else None
    f0, f1 = _get(ev, "sft", "false_refusal_rate"), _get(ev, final, "false_refusal_rate") if final else None
    if v0 and v1 and final != "sft":
        d = _change(ev, paired, final, "sft", "violation_rate")
        fr = _change(ev, paired, final, "sft", "false_refusal_rate") if f0 and f1 else (0.0, 0.0)
        ok = d[0] < -2 * d[1] and fr[0] <= 0.2
        out.append(_check(f"violation rate falls from SFT to the final model ({final}) without false refusals exploding",
                          ok, f"violations {v0['mean']:.3f} -> {v1['mean']:.3f} (2SE {2 * d[1]:.3f}); "
                              f"false refusals {f0['mean'] if f0 else float('nan'):.3f} -> "
                              f"{f1['mean'] if f1 else float('nan'):.3f} (allowed rise 0.2)"))
    for turn in ("adherence/turn4", "adherence/turn8"):
        a0, a1 = _get(ev, "ppo", turn), _get(ev, "gatt", turn)
        if a0 and a1:
            d = _change(ev, paired, "gatt", "ppo", turn)
            out.append(_check(f"Ghost Attention raises {turn} above the model before it (PPO)", d[0] > 2 * d[1],
                              f"PPO {a0['mean']:.3f} -> GAtt {a1['mean']:.3f} (2SE {2 * d[1]:.3f})"))
    c0, c1 = _get(ev, "gatt", "violation_rate"), _get(ev, "context_distillation", "violation_rate")
    if c0 and c1:
        d = _change(ev, paired, "context_distillation", "gatt", "violation_rate")
        floor = "; the starting model is already within 2SE of no violations" if c0["mean"] <= 2 * c0["se"] else ""
        out.append(_check("context distillation lowers the violation rate of the model it starts from (GAtt)",
                          d[0] < -2 * d[1],
                          f"{c0['mean']:.3f} -> {c1['mean']:.3f} (2SE {2 * d[1]:.3f}){floor}"))
    s0, s1 = _get(ev, "gatt", "rm_safety_adversarial"), _get(ev, "context_distillation", "rm_safety_adversarial")
    if s0 and s1:  # the paper's own measure of distillation (section 4.2.4, Figure 16)
        d = _change(ev, paired, "context_distillation", "gatt", "rm_safety_adversarial")
        out.append(_check("context distillation raises the safety RM's score of the answers to adversarial prompts "
                          "(the paper's Figure 16 measure)", d[0] > 2 * d[1],
                          f"GAtt {s0['mean']:.3f} -> {s1['mean']:.3f}, paired change {d[0]:+.3f} (2SE {2 * d[1]:.3f})"))
    for name, rep in rms.items():
        acc = rep.get("held_out", {})
        levels = {k.split("/", 1)[1]: v["accuracy"] for k, v in acc.items() if k.startswith("rating/")}
        if not levels:
            continue
        beats = acc["accuracy"] > 0.5 + _two_se(0.5, acc["n"])
        order = ("significantly_better" in levels and "negligibly_better" in levels
                 and levels["significantly_better"] == max(levels.values())
                 and levels["negligibly_better"] == min(levels.values()))
        out.append(_check(f"{name} beats chance on held-out pairs, highest on significantly better and lowest on "
                          "negligibly better (paper Table 8)", beats and order,
                          f"accuracy {acc['accuracy']:.3f} on {acc['n']}; " +
                          ", ".join(f"{k} {v:.3f} ±{_two_se(v, acc[f'rating/{k}']['n']):.3f}"
                                    for k, v in levels.items())))
    return out


def _two_se(p: float, n: int) -> float:
    """Two binomial standard errors of an accuracy p measured on n pairs."""
    return 2 * math.sqrt(max(p * (1 - p), 0.0) / max(1, n))


def _accuracy_cells(acc: dict, with_n: bool = True, levels_only: bool = False) -> str:
    """"key: accuracy (n=...)" for each nested group of an RM accuracy report; levels_only: keys with a "/"."""
    return ", ".join(f"{k}: {v['accuracy']:.3f}" + (f" (n={v['n']})" if with_n else "") for k, v in acc.items()
                     if isinstance(v, dict) and (not levels_only or "/" in k))


def _cell(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{s['mean']:.3f} ±{2 * s['se']:.3f}"


def _signed(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{s['mean']:+.3f} ±{2 * s['se']:.3f}"


def markdown(rep: dict[str, Any]) -> str:
    ev = rep["evaluation"]
    lines = ["# Llama 2 pipeline report", "", "Held-out evaluation by the world's oracle (mean ± 2 standard errors).", "",
             "| checkpoint | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in ROWS:
        if name in ev:
            lines.append(f"| {name} | " + " | ".join(_cell(ev[name].get(c)) for c in COLUMNS) + " |")
    for prefix, title in (("helpfulness/", "Helpfulness per task family:"),
                          ("violation_rate/", "Violation rate per risk category:")):
        fams = sorted({k for m in ev.values() for k in m if k.startswith(prefix)})
        if fams:
            lines += ["", title, "", "| checkpoint | " + " | ".join(f.split("/")[1] for f in fams) + " |",
                      "|---" * (len(fams) + 1) + "|"]
            for name in ROWS:
                if name in ev:
                    lines.append(f"| {name} | " + " | ".join(_cell(ev[name].get(f)) for f in fams) + " |")
    changes = [c for c in CHANGE_COLUMNS if any(c in d for d in rep.get("paired", {}).values())]
    if changes:
        lines += ["", "Changes between checkpoints, paired over the same prompts (mean difference ± 2 standard errors "
                  "of the per-prompt difference):", "", "| change | " + " | ".join(changes) + " |",
                  "|---" * (len(changes) + 1) + "|"]
        for key, d in rep["paired"].items():
            lines.append(f"| {key.replace('-', ' vs ')} | " + " | ".join(_signed(d.get(c)) for c in changes) + " |")
    lines += ["", "Reward models, held-out accuracy:", "", "| model | overall | per rating level / safety bin |", "|---|---|---|"]
    for name, r in rep["reward_models"].items():
        acc = r.get("held_out")
        if not acc:
            continue  # not an RM (the model-pairs collection report)
        lines.append(f"| {name} | {acc['accuracy']:.3f} | {_accuracy_cells(acc, levels_only=True)} |")
        oracle = acc.get("vs_oracle")
        if oracle:
            lines.append(f"| {name}, against the oracle (annotator flips undone) | {oracle['accuracy']:.3f} | "
                         f"{_accuracy_cells(oracle, with_n=False)} |")
        for origin in ("ladder", "model"):
            sub = acc.get(f"{origin}_pairs")
            if sub:
                lines.append(f"| {name}, {origin} pairs only | {sub['accuracy']:.3f} (n={sub['n']}) | "
                             f"{_accuracy_cells(sub)} |")
    lines += ["", "Checks:", ""]
    for c in rep["checks"]:
        mark = "HOLDS" if c["holds"] else "DOES NOT HOLD"
        lines.append(f"- **{mark}**: {c['claim']} — {c['detail']}")
    lines += ["", "Stage times (s): " + ", ".join(f"{k} {v['seconds']}" for k, v in rep["stages"].items())]
    return "\n".join(lines) + "\n"


def write_report(run: RunDir) -> dict[str, Any]:
    manifests = {s: run.read_manifest(s) for s in STAGE_ORDER}
    stages = {s: {"status": m["status"], "seconds": m.get("seconds")} for s, m in manifests.items() if m}
    metrics = {s: (m or {}).get("metrics", {}) for s, m in manifests.items()}
    ev = metrics.get("evaluate", {}).get("checkpoints", {})
    paired = metrics.get("evaluate", {}).get("paired", {})
    rms = metrics.get("reward_models", {})
    rep = {"stages": stages, "evaluation": ev, "reward_models": rms,
           "rejection_sampling": metrics.get("rejection_sampling", {}),
           "ppo": {k: v for k, v in metrics.get("ppo", {}).items() if k != "history"},
           "paired": paired, "checks": checks(ev, rms, paired)}
    atomic_write_text(run.root / "report.json", json.dumps(rep, indent=2, default=str))
    atomic_write_text(run.root / "report.md", markdown(rep))
    return rep
