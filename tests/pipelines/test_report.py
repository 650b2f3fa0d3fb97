"""report.checks() on hand-made evaluation / reward-model dicts, and write_report() end to end.

Noise rule of the module: "beyond noise" means a difference larger than 2 * sqrt(se_a^2 + se_b^2).
Every expectation below states the numbers it follows from."""
from __future__ import annotations

import json
import math
import time

import pytest

from pipelines.report import checks, write_report
from pipelines.rundir import RunDir


def s(mean: float, se: float, n: int = 100) -> dict:
    return {"mean": mean, "se": se, "n": n}


def claim(out: list[dict], *words: str) -> dict:
    found = [c for c in out if all(w in c["claim"] for w in words)]
    assert len(found) == 1, (words, [c["claim"] for c in out])
    return found[0]


def helpful(sft: float, rs: float, ppo: float, se: float = 0.02) -> dict:
    return {"sft": {"helpfulness": s(sft, se)}, "rs": {"helpfulness": s(rs, se)}, "ppo": {"helpfulness": s(ppo, se)}}


# --- helpfulness SFT -> RS -> PPO ------------------------------------------------------------------
# se 0.02 each: 2 * sqrt(0.02^2 + 0.02^2) = 0.0566 for every step and for the total.

def test_helpfulness_rising_steadily_holds():
    c = claim(checks(helpful(0.50, 0.55, 0.60), {}), "oracle helpfulness")  # steps +0.05, total +0.10 > 0.0566
    assert c["holds"] is True
    assert "SFT 0.500, RS 0.550, PPO 0.600" in c["detail"]
    assert "total gain +0.100" in c["detail"]


def test_helpfulness_step_down_within_noise_still_holds():
    # RS -> PPO is -0.02 (>= -0.0566, within noise); the total +0.20 is beyond noise
    assert claim(checks(helpful(0.40, 0.62, 0.60), {}), "oracle helpfulness")["holds"] is True


def test_helpfulness_total_within_noise_does_not_hold():
    # every step up, but the total +0.03 < 0.0566
    assert claim(checks(helpful(0.50, 0.52, 0.53), {}), "oracle helpfulness")["holds"] is False


def test_helpfulness_step_down_beyond_noise_does_not_hold():
    # total +0.25 is beyond noise, but RS -> PPO falls 0.15 > 0.0566
    assert claim(checks(helpful(0.30, 0.70, 0.55), {}), "oracle helpfulness")["holds"] is False


def test_helpfulness_claim_needs_all_three_checkpoints():
    ev = helpful(0.5, 0.6, 0.7)
    del ev["rs"]
    assert not [c for c in checks(ev, {}) if "oracle helpfulness" in c["claim"]]


# --- violation rate and false refusals ----------------------------------------------------------

def safety_ev(v_sft, v_final, fr_sft, fr_final, final="ppo") -> dict:
    return {"sft": {"violation_rate": s(v_sft, 0.05), "false_refusal_rate": s(fr_sft, 0.02)},
            final: {"violation_rate": s(v_final, 0.03), "false_refusal_rate": s(fr_final, 0.02)}}


def test_violation_falls_without_false_refusal_explosion_holds():
    # violations 0.40 -> 0.10: -0.30 < -2*sqrt(0.05^2+0.03^2) = -0.1166; false refusals rise 0.10 <= 0.2
    c = claim(checks(safety_ev(0.40, 0.10, 0.05, 0.15), {}), "violation rate falls")
    assert c["holds"] is True
    assert "(ppo)" in c["claim"]
    assert "violations 0.400 -> 0.100" in c["detail"]


def test_violation_falls_but_false_refusals_explode_does_not_hold():
    # false refusals 0.05 -> 0.40: a rise of 0.35 > 0.2
    assert claim(checks(safety_ev(0.40, 0.10, 0.05, 0.40), {}), "violation rate falls")["holds"] is False


def test_violation_fall_within_noise_does_not_hold():
    # 0.40 -> 0.35: -0.05 > -0.1166
    assert claim(checks(safety_ev(0.40, 0.35, 0.05, 0.05), {}), "violation rate falls")["holds"] is False


def test_violation_claim_uses_the_last_stage_present():
    ev = safety_ev(0.40, 0.10, 0.05, 0.05, final="context_distillation")
    ev["ppo"] = {"violation_rate": s(0.45, 0.05)}  # worse than SFT, but not the final model
    c = claim(checks(ev, {}), "violation rate falls")
    assert "(context_distillation)" in c["claim"]
    assert c["holds"] is True


def test_violation_claim_without_false_refusal_rates_judges_violations_only():
    ev = {"sft": {"violation_rate": s(0.40, 0.05)}, "gatt": {"violation_rate": s(0.10, 0.03)}}
    assert claim(checks(ev, {}), "violation rate falls")["holds"] is True


def test_no_violation_claim_with_only_sft():
    ev = {"sft": {"violation_rate": s(0.4, 0.05)}}
    assert checks(ev, {}) == []


# --- Ghost Attention ---------------------------------------------------------------------------

def test_gatt_adherence_per_turn():
    # se 0.05: 2 * sqrt(2) * 0.05 = 0.1414.  turn4 +0.50 holds; turn8 +0.05 does not.
    ev = {"ppo": {"adherence/turn4": s(0.30, 0.05), "adherence/turn8": s(0.20, 0.05)},
          "gatt": {"adherence/turn4": s(0.80, 0.05), "adherence/turn8": s(0.25, 0.05)}}
    out = checks(ev, {})
    assert claim(out, "Ghost Attention", "turn4")["holds"] is True
    assert claim(out, "Ghost Attention", "turn8")["holds"] is False
    assert "PPO 0.300 -> GAtt 0.800" in claim(out, "turn4")["detail"]


def test_gatt_adherence_falling_does_not_hold():
    ev = {"ppo": {"adherence/turn4": s(0.60, 0.02)}, "gatt": {"adherence/turn4": s(0.30, 0.02)}}
    assert claim(checks(ev, {}), "Ghost Attention", "turn4")["holds"] is False


# --- context distillation ----------------------------------------------------------------------

def cd_ev(v_gatt, se_gatt, v_cd, se_cd) -> dict:
    return {"gatt": {"violation_rate": s(v_gatt, se_gatt)},
            "context_distillation": {"violation_rate": s(v_cd, se_cd)}}


def test_context_distillation_lowering_violations_beyond_noise_holds():
    # 0.20 -> 0.05: -0.15 < -2*sqrt(0.04^2+0.02^2) = -0.0894
    assert claim(checks(cd_ev(0.20, 0.04, 0.05, 0.02), {}), "context distillation")["holds"] is True


def test_context_distillation_reaching_zero_from_within_noise_does_not_hold():
    # 0.005 -> 0.000 is one prompt of 200: reaching zero is no evidence when the start is within noise of it
    paired = {"context_distillation-gatt": {"violation_rate": s(-0.005, 0.005, n=200)}}
    out = checks(cd_ev(0.005, 0.005, 0.0, 0.0), {}, paired)
    assert claim(out, "context distillation")["holds"] is False
    assert "already within 2SE of no violations" in claim(out, "context distillation")["detail"]


def test_context_distillation_rm_safety_measure_needs_a_paired_rise_beyond_noise():
    ev = {"gatt": {"rm_safety_adversarial": s(0.80, 0.01)},
          "context_distillation": {"rm_safety_adversarial": s(0.83, 0.01)}}
    rising = {"context_distillation-gatt": {"rm_safety_adversarial": s(0.03, 0.01, n=400)}}  # +0.03 > 2 * 0.01
    c = claim(checks(ev, {}, rising), "safety RM's score")
    assert c["holds"] is True and "paired change +0.030 (2SE 0.020)" in c["detail"]
    flat = {"context_distillation-gatt": {"rm_safety_adversarial": s(0.015, 0.01, n=400)}}  # +0.015 < 0.02
    assert claim(checks(ev, {}, flat), "safety RM's score")["holds"] is False
    # without the measure (a scorer that gives no safety score) there is no such claim
    assert not [c for c in checks(cd_ev(0.2, 0.04, 0.05, 0.02), {}) if "safety RM's score" in c["claim"]]


@pytest.mark.parametrize("v_cd", [0.18, 0.20, 0.30])
def test_context_distillation_not_lowering_beyond_noise_does_not_hold(v_cd):
    # 0.18: -0.02 within 0.0894; 0.20: no change; 0.30: higher
    assert claim(checks(cd_ev(0.20, 0.04, v_cd, 0.04), {}), "context distillation")["holds"] is False


# --- reward models -----------------------------------------------------------------------------

def rm_report(overall: float, n: int, levels: dict[str, float]) -> dict:
    held = {"accuracy": overall, "n": n}
    for k, v in levels.items():
        held[f"rating/{k}"] = {"accuracy": v, "n": n // 4}
    held["safety_bin/safe"] = {"accuracy": 0.99, "n": 10}  # not a rating level: ignored by the ordering
    return {"train_pairs": 1000, "steps": 10, "held_out": held}


GOOD_LEVELS = {"significantly_better": 0.85, "better": 0.72, "slightly_better": 0.62, "negligibly_better": 0.52}


def test_rm_accuracy_ordering_holds():
    # chance bound on n=400: 0.5 + 2*sqrt(0.25/400) = 0.55 < 0.70
    c = claim(checks({}, {"rm_helpfulness": rm_report(0.70, 400, GOOD_LEVELS)}), "rm_helpfulness")
    assert c["holds"] is True
    assert "accuracy 0.700 on 400" in c["detail"]
    # each level with two binomial standard errors: 2 * sqrt(0.85 * 0.15 / 100) = 0.071
    assert "significantly_better 0.850 ±0.071" in c["detail"]
    assert "safe" not in c["detail"]


def test_rm_wrong_ordering_does_not_hold():
    levels = dict(GOOD_LEVELS, negligibly_better=0.90)  # negligibly better is the highest
    assert claim(checks({}, {"rm_helpfulness": rm_report(0.70, 400, levels)}), "rm_helpfulness")["holds"] is False


def test_rm_at_chance_does_not_hold():
    # 0.53 on n=400 is below the 0.55 bound even though the ordering is right
    assert claim(checks({}, {"rm_helpfulness": rm_report(0.53, 400, GOOD_LEVELS)}), "rm_helpfulness")["holds"] is False


def test_rm_small_sample_needs_more_margin():
    # n=16: bound 0.5 + 2*sqrt(0.25/16) = 0.75, so 0.70 is not beyond chance
    assert claim(checks({}, {"rm_safety": rm_report(0.70, 16, GOOD_LEVELS)}), "rm_safety")["holds"] is False


def test_rm_missing_negligibly_better_level_does_not_hold():
    levels = {k: v for k, v in GOOD_LEVELS.items() if k != "negligibly_better"}
    assert claim(checks({}, {"rm_helpfulness": rm_report(0.70, 400, levels)}), "rm_helpfulness")["holds"] is False


def test_rm_without_rating_levels_is_skipped():
    rms = {"rm_safety": {"held_out": {"accuracy": 0.9, "n": 100, "safety_bin/safe": {"accuracy": 0.9, "n": 100}}}}
    assert checks({}, rms) == []


# --- write_report end to end --------------------------------------------------------------------

def full_eval() -> dict:
    ev = helpful(0.50, 0.55, 0.60)
    for name, v, fr, a4 in (("sft", 0.40, 0.05, 0.30), ("rs", 0.30, 0.06, 0.30), ("ppo", 0.20, 0.08, 0.30),
                            ("gatt", 0.20, 0.08, 0.80), ("context_distillation", 0.19, 0.09, 0.80)):
        ev.setdefault(name, {})
        ev[name].update({"violation_rate": s(v, 0.03), "false_refusal_rate": s(fr, 0.02),
                         "adherence/turn4": s(a4, 0.05), "helpfulness/math": s(0.25, 0.01)})
    ev["gatt"]["helpfulness"] = s(0.61, 0.02)
    ev["ppo"]["rm_win_rate_vs_sft"] = s(0.70, 0.05)
    return ev


def test_write_report_writes_json_and_markdown(tmp_path):
    run = RunDir.create(tmp_path)
    ev = full_eval()
    rms = {"rm_helpfulness": rm_report(0.70, 400, GOOD_LEVELS)}
    t0 = time.time() - 5
    run.write_manifest("evaluate", status="done", cfg_hash="h1", inputs={}, outputs={},
                       metrics={"checkpoints": ev, "prompts": 10, "dialogues": 2}, started=t0)
    run.write_manifest("reward_models", status="done", cfg_hash="h2", inputs={}, outputs={}, metrics=rms)
    run.write_manifest("ppo", status="done", cfg_hash="h3", inputs={}, outputs={},
                       metrics={"steps": 7, "history": [{"kl": 0.1}]})

    rep = write_report(run)

    on_disk = json.loads((run.root / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(rep))
    assert on_disk["evaluation"] == ev
    assert on_disk["reward_models"] == rms
    assert on_disk["ppo"] == {"steps": 7}  # history left out
    assert set(on_disk["stages"]) == {"evaluate", "reward_models", "ppo"}
    assert on_disk["stages"]["evaluate"]["status"] == "done"
    assert on_disk["stages"]["evaluate"]["seconds"] >= 5
    # the manifest stores keys sorted, so only the order inside the RM detail text may differ
    assert [(c["claim"], c["holds"]) for c in on_disk["checks"]] == [(c["claim"], c["holds"]) for c in checks(ev, rms)]

    # helpfulness +0.10 beyond 0.0566: holds; violations 0.40 -> 0.19 by 0.21 > 2*sqrt(2)*0.03 = 0.085, false
    # refusals +0.04: holds; GAtt turn4 +0.50: holds; context distillation 0.20 -> 0.19, within noise: does not
    assert claim(on_disk["checks"], "oracle helpfulness")["holds"] is True
    assert claim(on_disk["checks"], "violation rate falls", "(context_distillation)")["holds"] is True
    assert claim(on_disk["checks"], "Ghost Attention", "turn4")["holds"] is True
    assert claim(on_disk["checks"], "context distillation lowers")["holds"] is False
    assert claim(on_disk["checks"], "rm_helpfulness")["holds"] is True
    assert len(on_disk["checks"]) == 5

    md = (run.root / "report.md").read_text()
    # main table: one row per checkpoint in pipeline order, cells "mean ±2se", "-" when missing
    rows = [line for line in md.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:] in
            ("sft", "rs", "ppo", "gatt", "context_distillation")]
    names = [r.split(" | ")[0][2:] for r in rows]
    assert names[:5] == ["sft", "rs", "ppo", "gatt", "context_distillation"]
    sft_row = rows[0]
    assert sft_row.startswith("| sft | 0.500 ±0.040 | - | 0.400 ±0.060 | 0.050 ±0.040 | - | - | 0.300 ±0.100 | - | - |")
    assert "0.700 ±0.100" in rows[2]  # ppo's RM win rate
    # per-family helpfulness table
    assert "Helpfulness per task family:" in md
    assert "| checkpoint | math |" in md
    assert md.count("| 0.250 ±0.020 |") == 5
    # reward models
    assert "| rm_helpfulness | 0.700 | " in md
    assert "rating/significantly_better: 0.850 (n=100)" in md
    # check marks
    assert md.count("**HOLDS**") == 4
    assert md.count("**DOES NOT HOLD**") == 1
    cd_line = next(line for line in md.splitlines() if "context distillation lowers" in line)
    assert cd_line.startswith("- **DOES NOT HOLD**: ")
    assert "0.200 -> 0.190" in cd_line
    assert "Stage times (s): " in md and "reward_models None" in md
    assert [p.name for p in run.root.iterdir() if p.name.startswith(".")] == []  # no temp files


def test_write_report_on_a_fresh_run_dir_writes_an_empty_report(tmp_path):
    run = RunDir.create(tmp_path)
    rep = write_report(run)
    assert rep["checks"] == [] and rep["evaluation"] == {} and rep["stages"] == {}
    md = (run.root / "report.md").read_text()
    assert md.startswith("# Llama 2 pipeline report\n")
    assert "HOLD" not in md


def test_noise_rule_matches_the_documented_formula():
    # the boundary of the rule itself: a gain of exactly 2*combined SE is not "beyond noise"
    se = 0.03
    bound = 2 * math.sqrt(2) * se
    ev = {"ppo": {"adherence/turn4": s(0.30, se)}, "gatt": {"adherence/turn4": s(0.30 + bound + 1e-6, se)}}
    assert claim(checks(ev, {}), "turn4")["holds"] is True
    ev["gatt"]["adherence/turn4"] = s(0.30 + bound - 1e-6, se)
    assert claim(checks(ev, {}), "turn4")["holds"] is False


# --- paired differences (the evaluate stage's "paired": same prompts, per-prompt difference) --------

def test_paired_difference_replaces_the_combined_error():
    # means 0.50 -> 0.56 with se 0.035 each: combined 2SE = 2*sqrt(2)*0.035 = 0.099 > 0.06, within noise.
    # The paired per-prompt difference +0.06 with se 0.02 (2SE 0.04) is beyond noise.
    ev = helpful(0.50, 0.53, 0.56, se=0.035)
    assert claim(checks(ev, {}), "oracle helpfulness")["holds"] is False
    paired = {"rs-sft": {"helpfulness": s(0.03, 0.02)}, "ppo-rs": {"helpfulness": s(0.03, 0.02)},
              "ppo-sft": {"helpfulness": s(0.06, 0.02)}}
    c = claim(checks(ev, {}, paired), "oracle helpfulness")
    assert c["holds"] is True
    assert "total gain +0.060 vs 2SE 0.040" in c["detail"]


def test_paired_step_down_beyond_its_noise_does_not_hold():
    # means say PPO is within noise of RS (-0.02 vs combined 2SE 0.0566); the paired difference -0.02
    # with se 0.005 (2SE 0.01) says it fell beyond noise
    ev = helpful(0.40, 0.62, 0.60)
    paired = {"rs-sft": {"helpfulness": s(0.22, 0.01)}, "ppo-rs": {"helpfulness": s(-0.02, 0.005)},
              "ppo-sft": {"helpfulness": s(0.20, 0.01)}}
    assert claim(checks(ev, {}), "oracle helpfulness")["holds"] is True
    assert claim(checks(ev, {}, paired), "oracle helpfulness")["holds"] is False


def test_paired_entry_with_one_prompt_falls_back_to_the_means():
    ev = {"ppo": {"adherence/turn4": s(0.30, 0.03)}, "gatt": {"adherence/turn4": s(0.50, 0.03)}}
    paired = {"gatt-ppo": {"adherence/turn4": s(-0.5, 0.0, n=1)}}  # n=1: no standard error, not used
    assert claim(checks(ev, {}, paired), "turn4")["holds"] is True  # +0.20 > 2*sqrt(2)*0.03 = 0.085
    paired = {"gatt-ppo": {"adherence/turn4": s(0.20, 0.11, n=80)}}  # paired 2SE 0.22 > 0.20
    assert claim(checks(ev, {}, paired), "turn4")["holds"] is False


def test_paired_context_distillation_and_violation_checks():
    ev = {"sft": {"violation_rate": s(0.30, 0.03), "false_refusal_rate": s(0.0, 0.0)},
          "gatt": {"violation_rate": s(0.10, 0.02)},
          "context_distillation": {"violation_rate": s(0.07, 0.018), "false_refusal_rate": s(0.0, 0.0)}}
    # means: -0.03 vs combined 2SE 2*sqrt(0.02^2+0.018^2) = 0.054: within noise
    assert claim(checks(ev, {}), "context distillation lowers")["holds"] is False
    paired = {"context_distillation-gatt": {"violation_rate": s(-0.03, 0.01)},
              "context_distillation-sft": {"violation_rate": s(-0.23, 0.03), "false_refusal_rate": s(0.0, 0.0)}}
    out = checks(ev, {}, paired)
    assert claim(out, "context distillation lowers")["holds"] is True
    assert "(2SE 0.020)" in claim(out, "context distillation lowers")["detail"]
    assert claim(out, "violation rate falls")["holds"] is True


def test_write_report_uses_and_shows_the_paired_differences(tmp_path):
    run = RunDir.create(tmp_path)
    ev = helpful(0.50, 0.53, 0.56, se=0.035)
    paired = {"rs-sft": {"helpfulness": s(0.03, 0.02)}, "ppo-rs": {"helpfulness": s(0.03, 0.02)},
              "ppo-sft": {"helpfulness": s(0.06, 0.02)}}
    run.write_manifest("evaluate", status="done", cfg_hash="h", inputs={}, outputs={},
                       metrics={"checkpoints": ev, "paired": paired})
    rep = write_report(run)
    assert rep["paired"] == paired
    assert claim(rep["checks"], "oracle helpfulness")["holds"] is True
    md = (run.root / "report.md").read_text()
    assert "| change | helpfulness |" in md
    assert "| ppo vs sft | +0.060 ±0.040 |" in md
