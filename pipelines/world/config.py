"""Sizes and knobs of the world's dataset bundle: the one place their defaults live.

The defaults fit the tiny CPU demo. Several knobs leave room for the later stages to improve on SFT,
as in the paper: `safety_demo_fraction` keeps safety demonstrations scarce in SFT (the paper's SFT had
few; safety came from RLHF and context distillation) and `sft_unsafe_fraction` makes half of them
comply; `sft_padded_fraction` has demonstrators open helpful answers with a pleasantry while the
preference annotators prefer the plain answer (`padded_pair_fraction` of their comparisons); `sft_noise` makes a fraction of SFT answers imperfect
(other phrasing, close-but-wrong values); `rl_risk_categories` limits the adversarial RL prompts to
some risk categories, so that context distillation, whose prompts cover all of them, has violations
left to remove.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipelines.world.safety import CATEGORY_NAMES
from pipelines.world.split import DEFAULT_EVAL_FRACTION

COUNT_FIELDS: tuple[str, ...] = (
    "pretrain_docs", "sft_dialogues", "helpfulness_pairs", "safety_pairs", "rl_prompts",
    "eval_helpful", "eval_adversarial", "eval_borderline", "eval_dialogues", "gatt_dialogues",
)
_EVAL_PROMPT_FIELDS: tuple[str, ...] = ("eval_helpful", "eval_adversarial", "eval_borderline")
_FRACTION_FIELDS: tuple[str, ...] = (
    "sft_constraint_fraction", "sft_borderline_fraction", "safety_demo_fraction", "sft_noise",
    "annotator_noise", "sft_unsafe_fraction", "sft_padded_fraction", "padded_pair_fraction", "gatt_adversarial_fraction", "safety_pair_adversarial_fraction", "rl_adversarial_fraction", "rl_borderline_fraction",
)


@dataclass(frozen=True)
class BundleConfig:
    # dataset sizes (rows)
    pretrain_docs: int = 20_000
    sft_dialogues: int = 4_000
    # 40% of the pairs are held out for the RMs' accuracy per rating level (reward_models.held_out_percent):
    # 3500 leaves ~2100 to train on, as 2600 at 20% did, and 2.7x the held-out pairs per level (2SE of a
    # level's accuracy ~0.05-0.08 instead of 0.08-0.13: the levels' order flipped on noise)
    helpfulness_pairs: int = 3_500
    safety_pairs: int = 3_500
    rl_prompts: int = 1_500
    # held-out sets near the size of the eval-split instance space (~365 helpful, ~280 borderline): the
    # report's noise bars shrink with them (2SE of a paired helpfulness change 0.040 -> 0.027)
    eval_helpful: int = 360  # balanced over the task families
    eval_adversarial: int = 400  # balanced over the risk categories
    eval_borderline: int = 270  # the borderline instance space is the smallest (~280 eval instances)
    eval_dialogues: int = 200  # multi-turn constraint dialogues, for adherence by turn
    gatt_dialogues: int = 500
    # user turns of the GAtt seed dialogues that are adversarial (RL risk categories; the rest helpful or
    # borderline), answered with the refusal the reward prefers (gatt.safety_select). Without them GAtt
    # unlearns some of PPO's refusals (violations 0.115 -> 0.158 and 0.215 -> 0.250 in session 9's copies of
    # runs 29 and 31), which safety context distillation then takes to 0.000-0.005. At 0.03 GAtt's few
    # refusal turns took violations to 0.015 and 0.003 by themselves in runs 29 and 31 and left distillation
    # nothing to show; at 0.1 it did so in every run (docs/results.md)
    gatt_adversarial_fraction: float = 0.0
    # dialogue shapes (user turns); 8 turns fit the tiny model's 512-token context
    sft_max_turns: int = 3
    # user turns of the SFT dialogues that state a system instruction, at most (0: sft_max_turns). The
    # paper's RLHF models forgot an instruction "after a few turns", which is what Ghost Attention fixes;
    # with instructions kept for 3 turns in SFT, the tiny model kept them at turn 4 almost as often as at
    # turn 1 and GAtt had nothing to show there (docs/results.md, session 10)
    sft_constraint_max_turns: int = 2
    eval_dialogue_turns: int = 8
    gatt_min_turns: int = 2
    gatt_max_turns: int = 8
    # SFT mix and imperfection
    sft_constraint_fraction: float = 0.4  # dialogues with a system constraint
    sft_borderline_fraction: float = 0.1  # user turns that are borderline requests
    safety_demo_fraction: float = 0.03  # user turns that are adversarial (answered with a refusal)
    sft_noise: float = 0.1  # answers replaced by an imperfect one (format, other words, close value)
    # adversarial SFT turns answered with compliance: demonstration data that is not fully safe, as
    # helpfulness-focused annotation tends to be, so the SFT model violates and RLHF has safety work
    sft_unsafe_fraction: float = 0.5
    # helpful SFT answers opened with a pleasantry ("Happy to help! ...", 0.15 of their score:
    # tasks.PADDING_FACTOR): the demonstrators pad, the preference annotators prefer the plain answer.
    # RLHF can learn this from the reward models, which is what the paper found (annotators judge
    # better than they write).
    sft_padded_fraction: float = 0.5
    # preference pairs
    # temperature of the Bradley-Terry annotator (pairs.flip_probability): flips 34% of the pairs with a
    # gap of 0.1, 12% at 0.3, 0.5% at 0.8. The flip probability scale 0.1 of sessions 1-7 (2.5% of the
    # "significantly better" pairs .. 10% of the "negligibly better" ones) left those a preference the RM
    # learnt (0.60-0.73 held-out accuracy, against the paper's 54.7), above "slightly better" in 2 of 7 runs
    annotator_noise: float = 0.15
    safety_pair_adversarial_fraction: float = 0.7  # the rest of the safety pairs are borderline
    # helpfulness pairs that compare an answer with the same answer padded by a pleasantry
    padded_pair_fraction: float = 0.25
    # wrong-valued answers in helpfulness pairs come in the surface forms of the right ones (canonical,
    # format, alt; ladder.FORMS): without it the canonical phrasing is mostly rejected and the RM learns
    # the phrasing instead of the value (measured: held-out canonical vs alt accuracy 0.00)
    pair_balance_forms: bool = True
    # RL prompt mix (the rest is helpful). At 0.1 PPO alone took violations to 0.000-0.003 in 2 of 3 runs,
    # which left safety context distillation nothing to do; at 0.05 PPO leaves some (0.10-0.115 in runs
    # 27-28) and distillation takes them down, as in the paper, where it follows safety RLHF (docs/results.md)
    rl_adversarial_fraction: float = 0.05
    # risk categories (the first n of safety.CATEGORY_NAMES) the adversarial RL prompts come from: the
    # safety RLHF data covers criminal and dangerous requests, red-teaming (the safety preference data,
    # context distillation's prompts, evaluation) all four
    rl_risk_categories: int = 2
    rl_borderline_fraction: float = 0.15
    # share of all task instances held out for evaluation (split.py)
    eval_fraction: float = DEFAULT_EVAL_FRACTION

    def __post_init__(self) -> None:
        for name in COUNT_FIELDS:
            if getattr(self, name) < 0:
                raise ValueError(f"BundleConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in _FRACTION_FIELDS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"BundleConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not isinstance(self.pair_balance_forms, bool):
            raise ValueError(f"BundleConfig.pair_balance_forms must be a bool, got {self.pair_balance_forms!r}")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"BundleConfig.eval_fraction must be in (0, 1), got {self.eval_fraction}")
        if self.safety_demo_fraction + self.sft_borderline_fraction > 1.0:
            raise ValueError("BundleConfig: safety_demo_fraction + sft_borderline_fraction must be <= 1")
        if not 1 <= self.rl_risk_categories <= len(CATEGORY_NAMES):
            raise ValueError(f"BundleConfig.rl_risk_categories must be in 1..{len(CATEGORY_NAMES)} (the risk "
                             f"categories {list(CATEGORY_NAMES)}), got {self.rl_risk_categories}")
        if self.gatt_adversarial_fraction + self.sft_borderline_fraction > 1.0:
            raise ValueError("BundleConfig: gatt_adversarial_fraction + sft_borderline_fraction must be <= 1")
        if self.rl_adversarial_fraction + self.rl_borderline_fraction > 1.0:
            raise ValueError("BundleConfig: rl_adversarial_fraction + rl_borderline_fraction must be <= 1")
        if not 1 <= self.gatt_min_turns <= self.gatt_max_turns:
            raise ValueError(f"BundleConfig: need 1 <= gatt_min_turns <= gatt_max_turns, got "
                             f"{self.gatt_min_turns}, {self.gatt_max_turns}")
        if self.sft_max_turns < 1 or self.eval_dialogue_turns < 1:
            raise ValueError("BundleConfig: sft_max_turns and eval_dialogue_turns must be >= 1")
        if not 0 <= self.sft_constraint_max_turns <= self.sft_max_turns:
            raise ValueError(f"BundleConfig.sft_constraint_max_turns must be in 0..sft_max_turns "
                             f"({self.sft_max_turns}; 0 means sft_max_turns), got {self.sft_constraint_max_turns}")

    @property
    def rl_categories(self) -> tuple[str, ...]:
        """The risk categories the adversarial RL prompts (and GAtt's adversarial turns) come from."""
        return tuple(CATEGORY_NAMES[: self.rl_risk_categories])

    def scaled(self, factor: float) -> BundleConfig:
        """The same bundle with every dataset size multiplied by `factor` (at least one row each).

        The held-out prompt sets only shrink: they are distinct eval-split instances, and the instance
        space bounds them (~350 helpful, ~500 adversarial, ~280 borderline at eval_fraction 0.2).
        """
        if factor <= 0:
            raise ValueError(f"scale factor must be > 0, got {factor}")
        sizes = {name: max(1, round(getattr(self, name) * factor)) for name in COUNT_FIELDS}
        for name in _EVAL_PROMPT_FIELDS:
            sizes[name] = min(sizes[name], getattr(self, name))
        return dataclasses.replace(self, **sizes)
