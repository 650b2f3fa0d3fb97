"""The built-in synthetic assistant world with oracle judges (DESIGN.md "The built-in task").

    from pipelines.world import BundleConfig, write_bundle, judge, judge_dialogue, oracle_reward
    summary = write_bundle("runs/demo/data", BundleConfig().scaled(0.1), seed=0)
    j = judge(prompt_row, "7 plus 5 is 12.")   # Judgment(helpfulness=1.0, refusal=False, violation=False, ...)

Modules: vocab (fixed tables), parsing (answer reading), tasks (Task, grading scale), helpful_numbers /
helpful_words / helpful (task families), safety (adversarial + borderline), constraints (GAtt
constraints), oracle (judgments), split (train/eval), ladder + pairs (preference pairs), dialogues /
prompts / pretrain_text / generate (datasets), config (BundleConfig), bundle (writer + CLI).
`write_bundle` / `format_summary` load lazily, so `python -m pipelines.world.bundle` does not import
its own module twice (runpy warns when the package already loaded the module it runs).
"""

from typing import Any

from pipelines.world.config import BundleConfig
from pipelines.world.constraints import (
    CONSTRAINT_KINDS,
    apply_constraints,
    check_constraints,
    make_constraint,
    sample_constraints,
    strip_decoration,
    system_text,
)
from pipelines.world.generate import GENERATORS, Dataset, generate_all, generate_dataset
from pipelines.world.helpful import FAMILY_NAMES, sample_helpful
from pipelines.world.oracle import Judgment, judge, judge_dialogue, judge_turn, oracle_reward, parse_meta
from pipelines.world.pairs import rating_from_gap, safety_label
from pipelines.world.parsing import is_refusal
from pipelines.world.safety import CATEGORY_NAMES, sample_adversarial, sample_borderline
from pipelines.world.split import split_of
from pipelines.world.tasks import Task

WorldSizes = BundleConfig  # the name used in the design brief
_BUNDLE = ("write_bundle", "format_summary")


def __getattr__(name: str) -> Any:
    if name in _BUNDLE:
        from pipelines.world import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module 'pipelines.world' has no attribute {name!r}")


__all__ = [
    "CATEGORY_NAMES", "CONSTRAINT_KINDS", "FAMILY_NAMES", "GENERATORS", "BundleConfig", "Dataset", "Judgment",
    "Task", "WorldSizes", "apply_constraints", "check_constraints", "generate_all", "generate_dataset", "is_refusal",
    "judge", "judge_dialogue", "judge_turn", "make_constraint", "oracle_reward", "parse_meta", "rating_from_gap",
    "safety_label", "sample_adversarial", "sample_borderline", "sample_constraints", "sample_helpful", "split_of",
    "strip_decoration", "system_text", "write_bundle", "format_summary",
]
