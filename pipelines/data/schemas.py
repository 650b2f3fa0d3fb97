"""Explicit pyarrow schemas of every dataset the pipeline keeps on disk (DESIGN.md "Data").

One schema per dataset kind. A dialogue is `messages`: a list of `{role, content}` structs with
roles "system" | "user" | "assistant" (an optional system message first, then alternating
user/assistant turns; LLAMA2_SPEC.md section 2). The label sets below are the paper's (section 5):
preference strength (RATINGS, strongest first, so index 0 = "significantly better") and the
three-way safety label of safety comparisons.
"""

from __future__ import annotations

import pyarrow as pa

ROLES = ("system", "user", "assistant")
# Llama 2 paper section 3.2.1: "significantly better, better, slightly better, or negligibly
# better/unsure". Index 0 is the strongest preference (the largest margin, section 3.2.2).
RATINGS = ("significantly_better", "better", "slightly_better", "negligibly_better")
# Section 3.2.1 / 4.2.3: safety comparisons carry one of three bins; the fourth case (chosen unsafe,
# rejected safe) is dropped by the paper and therefore has no label here.
SAFETY_LABELS = ("chosen_safe_rejected_unsafe", "both_safe", "both_unsafe")
PROMPT_KINDS = ("helpful", "adversarial", "borderline")
PREFERENCE_KINDS = ("helpfulness", "safety")
SPLITS = ("train", "eval")


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _optional(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=True)


def _list_of(type_: pa.DataType) -> pa.DataType:
    # Items are never null: a token id or a message is always present.
    return pa.list_(pa.field("item", type_, nullable=False))


MESSAGE_TYPE = pa.struct([_required("role", pa.string()), _required("content", pa.string())])
MESSAGES_TYPE = _list_of(MESSAGE_TYPE)
TOKENS_TYPE = _list_of(pa.int32())
LOGPROBS_TYPE = _list_of(pa.float32())

TEXT_SCHEMA = pa.schema([_required("id", pa.string()), _required("text", pa.string())])

PROMPTS_SCHEMA = pa.schema(
    [
        _required("id", pa.string()),
        _required("messages", MESSAGES_TYPE),  # ends with a user turn
        _required("kind", pa.string()),  # PROMPT_KINDS
        _required("task", pa.string()),
        _required("is_safety", pa.bool_()),  # IS_SAFETY(p) of section 3.2.2's reward combination
        _required("meta", pa.string()),  # a JSON object, "{}" when empty
        _required("split", pa.string()),  # SPLITS
    ]
)

DIALOGUES_SCHEMA = pa.schema(
    [
        _required("id", pa.string()),
        _required("messages", MESSAGES_TYPE),  # ends with an assistant turn
        _required("source", pa.string()),
        _required("meta", pa.string()),
    ]
)

PREFERENCES_SCHEMA = pa.schema(
    [
        _required("id", pa.string()),
        _required("prompt", MESSAGES_TYPE),  # ends with a user turn
        _required("chosen", pa.string()),
        _required("rejected", pa.string()),
        _required("rating", pa.string()),  # RATINGS
        _optional("safety_label", pa.string()),  # SAFETY_LABELS or null
        _required("kind", pa.string()),  # PREFERENCE_KINDS
        _required("is_safety", pa.bool_()),
        _required("task", pa.string()),
        _required("meta", pa.string()),
    ]
)

ROLLOUTS_SCHEMA = pa.schema(
    [
        _required("prompt_id", pa.string()),
        _required("sample_index", pa.int32()),  # which of the K samples of this prompt
        _required("prompt_tokens", TOKENS_TYPE),
        _required("response_tokens", TOKENS_TYPE),
        _required("response_logprobs", LOGPROBS_TYPE),  # one per response token
        _required("response_text", pa.string()),
        _required("weight_version", pa.int64()),  # policy version that generated the sample
        _required("temperature", pa.float32()),
        _required("reward", pa.float32()),
        _optional("helpfulness_score", pa.float32()),
        _optional("safety_score", pa.float32()),
        _required("stage", pa.string()),
        _required("iteration", pa.int32()),
    ]
)

EVAL_RESULTS_SCHEMA = pa.schema(
    [
        _required("checkpoint", pa.string()),
        _required("stage", pa.string()),
        _required("prompt_id", pa.string()),
        _required("kind", pa.string()),
        _required("task", pa.string()),
        _required("turn", pa.int32()),
        _required("answer", pa.string()),
        _required("helpfulness", pa.float32()),
        _required("refusal", pa.bool_()),
        _required("violation", pa.bool_()),
        _optional("adherence", pa.bool_()),  # null when the prompt carries no system constraint
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "text": TEXT_SCHEMA,
    "prompts": PROMPTS_SCHEMA,
    "dialogues": DIALOGUES_SCHEMA,
    "preferences": PREFERENCES_SCHEMA,
    "rollouts": ROLLOUTS_SCHEMA,
    "eval_results": EVAL_RESULTS_SCHEMA,
}

# Columns that identify a row; a dataset may not hold two rows with the same key. Rollouts are
# keyed by (stage, iteration, prompt, sample) so one file can hold several iterations.
UNIQUE_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("id",),
    "prompts": ("id",),
    "dialogues": ("id",),
    "preferences": ("id",),
    "rollouts": ("stage", "iteration", "prompt_id", "sample_index"),
    "eval_results": ("checkpoint", "stage", "prompt_id", "turn"),
}


def schema_for(kind: str) -> pa.Schema:
    """The schema of a dataset kind; an unknown kind is an error listing the known ones."""
    if kind not in SCHEMAS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {sorted(SCHEMAS)}")
    return SCHEMAS[kind]
