"""Validation of dataset rows and Parquet schemas, with errors that say where and what.

Every problem is a `DataError` naming the file, the row (0-based index, or the 1-based line of a
JSONL input), the row's id when it has one, the field, and what was expected. `RowValidator` runs
all row checks in order (types, content, context length, duplicate key) and either raises or, with
`on_bad_row="skip"`, skips the row and counts it per reason in a `SkipReport`: nothing is dropped
silently.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from model.chat import SPECIAL_TAGS
from pipelines.data.schemas import (
    PREFERENCE_KINDS,
    PROMPT_KINDS,
    RATINGS,
    ROLES,
    SAFETY_LABELS,
    SPLITS,
    UNIQUE_KEYS,
    schema_for,
)

log = logging.getLogger(__name__)

OnBadRow = Literal["raise", "skip"]
CountTokens = Callable[[list[dict[str, str]]], int]
# Kinds whose rows are checked against the model's context; "text" is chunked by pretraining and
# "eval_results" holds answers already generated, so neither has a context limit.
_CONTEXT_KINDS = ("prompts", "dialogues", "preferences", "rollouts")
# Log-probabilities are <= 0; the tolerance absorbs float32 rounding of log_softmax near 0.
_LOGPROB_TOLERANCE = 1e-4
_EMPTY = "expected non-empty text, found an empty or blank string"


class DataError(ValueError):
    """Bad data: the message names the file, the row, the field and what was expected."""

    def __init__(
        self,
        path: object,
        detail: str,
        *,
        row: int | None = None,
        line: int | None = None,
        row_id: str | None = None,
        field: str | None = None,
        reason: str = "invalid",
    ) -> None:
        self.path, self.detail, self.row, self.line = str(path), detail, row, line
        self.row_id, self.field, self.reason = row_id, field, reason
        parts = []
        if line is not None:
            parts.append(f"line {line}" + (f" ({row_id})" if row_id else ""))
        elif row is not None:
            parts.append(f"row {row}" + (f" ({row_id})" if row_id else ""))
        if field is not None:
            parts.append(f"field '{field}'")
        where = ", ".join(parts)
        super().__init__(f"{self.path}: {where + ': ' if where else ''}{detail}")

    def __reduce__(self) -> tuple:
        # Keyword-only fields: rebuild through a function so the error survives pickling (Ray tasks).
        fields = {"row": self.row, "line": self.line, "row_id": self.row_id, "field": self.field, "reason": self.reason}
        return _rebuild_data_error, (self.path, self.detail, fields)


def _rebuild_data_error(path: str, detail: str, fields: dict[str, Any]) -> DataError:
    return DataError(path, detail, **fields)


class RowError(ValueError):
    """A problem inside one row, before the file and row are known (`RowValidator` adds them)."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__(f"field '{field}': {detail}")
        self.field, self.reason, self.detail = field, reason, detail

    def __reduce__(self) -> tuple:
        return RowError, (self.field, self.reason, self.detail)


class DropRow(Exception):
    """Raised by a row builder for a row removed by a documented rule (counted, not an error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class SkipReport:
    """What a read or an import kept, skipped (bad rows, per reason) and dropped by rule."""

    path: str
    kind: str
    total: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    first_error: dict[str, str] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        text = f"{self.path} ({self.kind}): kept {self.kept} of {self.total} rows"
        if self.skipped:
            text += f"; skipped {self.num_skipped} bad rows {dict(sorted(self.skipped.items()))}"
        if self.dropped:
            text += f"; dropped {self.num_dropped} by rule {dict(sorted(self.dropped.items()))}"
        return text


# ---------------------------------------------------------------- types (Python values vs schema)


def _is_int(x: Any) -> bool:
    # numpy integers count (pyarrow converts them exactly); bool is an int subclass but not a number here.
    return type(x) is int or (isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_)))


def _is_real(x: Any) -> bool:
    return type(x) in (int, float) or (isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)))


def _found(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r:.40}"


def _scalar_problem(value: Any, type_: pa.DataType, name: str) -> RowError | None:
    if pa.types.is_integer(type_):
        if not _is_int(value):
            return RowError(name, "wrong_type", f"expected {type_}, found {_found(value)}")
        bound = 2 ** (type_.bit_width - 1)
        if not -bound <= value < bound:
            return RowError(name, "wrong_type", f"expected {type_}, found {value} (out of range)")
        return None
    if pa.types.is_string(type_):
        ok = isinstance(value, str)
    elif pa.types.is_boolean(type_):
        ok = isinstance(value, (bool, np.bool_))
    elif pa.types.is_floating(type_):
        ok = _is_real(value)
    else:  # pragma: no cover - the schemas hold no other scalar types
        raise TypeError(f"no Python check for arrow type {type_}")
    return None if ok else RowError(name, "wrong_type", f"expected {type_}, found {_found(value)}")


def _primitive_list_problem(value: list, type_: pa.DataType, name: str) -> RowError | None:
    """Token ids and log-probs: one tight pass per list instead of a call per element."""
    fast = (int,) if pa.types.is_integer(type_) else (int, float)
    is_ok = _is_int if pa.types.is_integer(type_) else _is_real
    bad = next((i for i, x in enumerate(value) if type(x) not in fast and not is_ok(x)), None)
    if bad is not None:
        reason = "null_value" if value[bad] is None else "wrong_type"
        return RowError(f"{name}[{bad}]", reason, f"expected {type_}, found {_found(value[bad])}")
    if value and pa.types.is_integer(type_):
        bound = 2 ** (type_.bit_width - 1)
        if min(value) < -bound or max(value) >= bound:
            return RowError(name, "wrong_type", f"expected {type_} items, found a value out of range")
    return None


def _struct_problem(value: Any, type_: pa.StructType, name: str) -> RowError | None:
    fields = [type_.field(i) for i in range(type_.num_fields)]
    names = [f.name for f in fields]
    if not isinstance(value, Mapping) or sorted(value) != sorted(names):
        found = sorted(value) if isinstance(value, Mapping) else type(value).__name__
        return RowError(name, "wrong_type", f"expected an object with exactly the keys {names}, found {found}")
    for f in fields:
        problem = _value_problem(value[f.name], f.type, f.nullable, f"{name}.{f.name}")
        if problem:
            return problem
    return None


def _value_problem(value: Any, type_: pa.DataType, nullable: bool, name: str) -> RowError | None:
    """The first problem of `value` against `type_` (with its field path), or None if it fits."""
    if value is None:
        return None if nullable else RowError(name, "null_value", f"expected {type_}, found null")
    if pa.types.is_list(type_):
        if not isinstance(value, list):
            return RowError(name, "wrong_type", f"expected a list ({type_}), found {type(value).__name__}")
        item = type_.value_field
        if not pa.types.is_struct(item.type):
            return _primitive_list_problem(value, item.type, name)
        for i, x in enumerate(value):
            problem = _value_problem(x, item.type, item.nullable, f"{name}[{i}]")
            if problem:
                return problem
        return None
    if pa.types.is_struct(type_):
        return _struct_problem(value, type_, name)
    return _scalar_problem(value, type_, name)


def check_types(row: Mapping[str, Any], kind: str) -> None:
    """Raise RowError unless `row` has exactly the schema's fields with values of the right type."""
    schema = schema_for(kind)
    if not isinstance(row, Mapping):
        raise RowError("*", "wrong_type", f"expected a row object, found {type(row).__name__}")
    missing = [n for n in schema.names if n not in row]
    if missing:
        detail = f"expected this field (the {kind} schema has {schema.names}), found it missing"
        raise RowError(missing[0], "missing_field", detail)
    extra = sorted(set(row) - set(schema.names))
    if extra:
        detail = f"expected only the {kind} schema's fields {schema.names}, found this extra field"
        raise RowError(extra[0], "unexpected_field", detail)
    for f in schema:
        problem = _value_problem(row[f.name], f.type, f.nullable, f.name)
        if problem:
            raise problem


# ---------------------------------------------------------------- content (per kind)


def _nonempty(row: Mapping[str, Any], name: str) -> None:
    if not row[name].strip():
        raise RowError(name, "empty_content", _EMPTY)


def _one_of(row: Mapping[str, Any], name: str, allowed: Sequence[str], reason: str) -> None:
    if row[name] not in allowed:
        raise RowError(name, reason, f"expected one of {list(allowed)}, found {row[name]!r}")


def _no_chat_tags(text: str, name: str) -> None:
    # Meta's chat_completion refuses messages containing its format tags (LLAMA2_SPEC.md section 2);
    # catching them here names the row instead of failing later inside tokenization.
    for tag in SPECIAL_TAGS:
        if tag in text:
            detail = f"expected no chat-format tags {list(SPECIAL_TAGS)} (Llama 2 refuses them), found {tag!r}"
            raise RowError(name, "chat_tag", detail)


def _check_meta(row: Mapping[str, Any]) -> None:
    try:
        meta = json.loads(row["meta"])
    except json.JSONDecodeError as exc:
        detail = f"expected a JSON object (e.g. '{{}}'), found invalid JSON: {exc}"
        raise RowError("meta", "invalid_json", detail) from None
    if not isinstance(meta, dict):
        raise RowError("meta", "invalid_json", f"expected a JSON object, found a JSON {type(meta).__name__}")


def _check_finite(value: float | None, name: str) -> None:
    if value is not None and not math.isfinite(value):
        raise RowError(name, "invalid_value", f"expected a finite number, found {value}")


def _check_nonnegative(row: Mapping[str, Any], name: str) -> None:
    if row[name] < 0:
        raise RowError(name, "invalid_value", f"expected a value >= 0, found {row[name]}")


def check_messages(messages: Sequence[Mapping[str, str]], *, last_role: str, name: str = "messages") -> None:
    """Raise RowError unless `messages` is [system?] user assistant user ... ending with `last_role`.

    The Llama 2 chat format (LLAMA2_SPEC.md section 2) folds an optional first system message into the
    first user turn and expects strict user/assistant alternation after it.
    """
    if not messages:
        raise RowError(name, "turn_order", "expected at least one user turn, found no messages")
    for i, message in enumerate(messages):
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise RowError(f"{name}[{i}].role", "unknown_role", f"expected one of {list(ROLES)}, found {role!r}")
        if not content.strip():
            raise RowError(f"{name}[{i}].content", "empty_content", _EMPTY)
        _no_chat_tags(content, f"{name}[{i}].content")
    start = 1 if messages[0]["role"] == "system" else 0
    if start == len(messages):
        raise RowError(name, "turn_order", "expected a user turn after the system message, found none")
    for i in range(start, len(messages)):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if messages[i]["role"] != expected:
            raise RowError(
                f"{name}[{i}].role", "turn_order",
                f"expected {expected!r} (an optional system message first, then alternating user/assistant), "
                f"found {messages[i]['role']!r}",
            )
    if messages[-1]["role"] != last_role:
        raise RowError(
            f"{name}[{len(messages) - 1}].role", "turn_order",
            f"expected the last turn to be {last_role!r}, found {messages[-1]['role']!r}",
        )


def _check_text(row: Mapping[str, Any]) -> None:
    _nonempty(row, "id")
    _nonempty(row, "text")


def _check_prompt(row: Mapping[str, Any]) -> None:
    _nonempty(row, "id")
    check_messages(row["messages"], last_role="user")
    _one_of(row, "kind", PROMPT_KINDS, "unknown_value")
    _nonempty(row, "task")
    _check_meta(row)
    _one_of(row, "split", SPLITS, "unknown_value")


def _check_dialogue(row: Mapping[str, Any]) -> None:
    _nonempty(row, "id")
    check_messages(row["messages"], last_role="assistant")
    _nonempty(row, "source")
    _check_meta(row)


def _check_preference(row: Mapping[str, Any]) -> None:
    _nonempty(row, "id")
    check_messages(row["prompt"], last_role="user", name="prompt")
    for name in ("chosen", "rejected"):
        _nonempty(row, name)
        _no_chat_tags(row[name], name)
    # The chat format strips answers (section 2), so answers equal up to surrounding blanks are one answer.
    if row["chosen"].strip() == row["rejected"].strip():
        detail = "expected an answer different from 'chosen', found the same text"
        raise RowError("rejected", "chosen_equals_rejected", detail)
    _one_of(row, "rating", RATINGS, "unknown_rating")
    if row["safety_label"] is not None:
        _one_of(row, "safety_label", SAFETY_LABELS, "unknown_safety_label")
    _one_of(row, "kind", PREFERENCE_KINDS, "unknown_value")
    _nonempty(row, "task")
    _check_meta(row)


def _check_rollout(row: Mapping[str, Any]) -> None:
    _nonempty(row, "prompt_id")
    _nonempty(row, "stage")
    for name in ("sample_index", "weight_version", "iteration"):
        _check_nonnegative(row, name)
    if not row["prompt_tokens"]:
        raise RowError("prompt_tokens", "empty_content", "expected at least one prompt token, found none")
    for name in ("prompt_tokens", "response_tokens"):
        if row[name] and min(row[name]) < 0:
            raise RowError(name, "invalid_value", f"expected token ids >= 0, found {min(row[name])}")
    n_tokens, n_logprobs = len(row["response_tokens"]), len(row["response_logprobs"])
    if n_tokens != n_logprobs:
        detail = f"expected one log-prob per response token ({n_tokens}), found {n_logprobs}"
        raise RowError("response_logprobs", "invalid_value", detail)
    logprobs = row["response_logprobs"]
    if logprobs and not all(math.isfinite(x) and x <= _LOGPROB_TOLERANCE for x in logprobs):
        raise RowError("response_logprobs", "invalid_value", "expected finite log-probabilities <= 0")
    for name in ("temperature", "reward", "helpfulness_score", "safety_score"):
        _check_finite(row[name], name)
    _check_nonnegative(row, "temperature")


def _check_eval_result(row: Mapping[str, Any]) -> None:
    for name in ("checkpoint", "stage", "prompt_id", "kind", "task"):
        _nonempty(row, name)
    _check_nonnegative(row, "turn")
    _check_finite(row["helpfulness"], "helpfulness")


_CONTENT_CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "text": _check_text,
    "prompts": _check_prompt,
    "dialogues": _check_dialogue,
    "preferences": _check_preference,
    "rollouts": _check_rollout,
    "eval_results": _check_eval_result,
}


def check_row(row: Mapping[str, Any], kind: str) -> None:
    """Raise RowError unless `row` is a valid row of `kind`: types first, then content."""
    check_types(row, kind)
    _CONTENT_CHECKS[kind](row)


# ---------------------------------------------------------------- context length


def _sequences_to_count(row: Mapping[str, Any], kind: str) -> list[tuple[str, list[dict[str, str]]]]:
    """The dialogues whose token count must fit the context, with the field each one stands for."""
    if kind in ("prompts", "dialogues"):
        return [("messages", list(row["messages"]))]
    # A comparison is scored as prompt + answer, so each answer must fit with its prompt.
    return [(name, [*row["prompt"], {"role": "assistant", "content": row[name]}]) for name in ("chosen", "rejected")]


def check_context(row: Mapping[str, Any], kind: str, max_tokens: int, count_tokens: CountTokens | None) -> None:
    """Raise RowError if the row does not fit a context of `max_tokens` tokens."""
    if kind == "rollouts":  # already tokenized
        n = len(row["prompt_tokens"]) + len(row["response_tokens"])
        if n > max_tokens:
            detail = f"expected prompt + response <= {max_tokens} tokens (the model's context), found {n}"
            raise RowError("response_tokens", "too_long", detail)
        return
    assert count_tokens is not None  # RowValidator checks this up front
    for name, messages in _sequences_to_count(row, kind):
        try:
            n = count_tokens(messages)
        except Exception as exc:  # noqa: BLE001 - any tokenizer failure is reported at its row
            detail = f"expected text that count_tokens can measure, but it failed: {exc}"
            raise RowError(name, "untokenizable", detail) from exc
        if n > max_tokens:
            raise RowError(name, "too_long", f"expected at most {max_tokens} tokens (the model's context), found {n}")


# ---------------------------------------------------------------- rows of one file


def _row_label(row: Mapping[str, Any] | None, kind: str) -> str | None:
    if not isinstance(row, Mapping):
        return None
    keys = [k for k in UNIQUE_KEYS[kind] if k in row and row[k] is not None]
    return ", ".join(f"{k}={row[k]!r}" if isinstance(row[k], str) else f"{k}={row[k]}" for k in keys) or None


class RowValidator:
    """Checks the rows of one file in order; raises or skips-and-counts bad rows.

    `accept(make_row, index=..., line=...)` builds the row (an importer's conversion may itself raise
    RowError, or DropRow for a row removed by a documented rule), checks types, content, context
    length and key uniqueness, and returns the row, or None when it was skipped or dropped.
    """

    def __init__(
        self,
        kind: str,
        path: object,
        *,
        on_bad_row: OnBadRow = "raise",
        max_tokens: int | None = None,
        count_tokens: CountTokens | None = None,
    ) -> None:
        schema_for(kind)
        if on_bad_row not in ("raise", "skip"):
            raise ValueError(f"on_bad_row must be 'raise' or 'skip', found {on_bad_row!r}")
        if max_tokens is not None:
            if kind not in _CONTEXT_KINDS:
                raise ValueError(f"max_tokens does not apply to {kind!r} rows; it applies to {_CONTEXT_KINDS}")
            if count_tokens is None and kind != "rollouts":
                raise ValueError(f"max_tokens on {kind!r} rows needs count_tokens(messages) -> int")
        self.kind, self.path, self.on_bad_row = kind, str(path), on_bad_row
        self.max_tokens, self.count_tokens = max_tokens, count_tokens
        self.report = SkipReport(path=self.path, kind=kind)
        self._seen: dict[tuple, str] = {}

    def _where(self, index: int, line: int | None) -> str:
        return f"line {line}" if line is not None else f"row {index}"

    def _check(self, row: Mapping[str, Any], index: int, line: int | None) -> None:
        check_row(row, self.kind)
        if self.max_tokens is not None:
            check_context(row, self.kind, self.max_tokens, self.count_tokens)
        key = tuple(row[k] for k in UNIQUE_KEYS[self.kind])
        if key in self._seen:
            detail = f"expected a unique key, found a duplicate of {self._seen[key]}"
            raise RowError(", ".join(UNIQUE_KEYS[self.kind]), "duplicate_id", detail)
        self._seen[key] = self._where(index, line)

    def accept(
        self,
        make_row: Callable[[], dict[str, Any]] | dict[str, Any],
        *,
        index: int,
        line: int | None = None,
        row_id: str | None = None,
    ) -> dict[str, Any] | None:
        """The checked row, or None if skipped/dropped; `row_id` names a row that could not be built."""
        self.report.total += 1
        row = None
        try:
            row = make_row() if callable(make_row) else make_row
            self._check(row, index, line)
        except DropRow as drop:
            self.report.dropped[drop.reason] = self.report.dropped.get(drop.reason, 0) + 1
            log.debug("%s: %s dropped (%s)", self.path, self._where(index, line), drop.reason)
            return None
        except RowError as issue:
            label = _row_label(row, self.kind) if row is not None else (f"id={row_id!r}" if row_id else None)
            error = DataError(
                self.path, issue.detail, row=index, line=line, row_id=label,
                field=issue.field, reason=issue.reason,
            )
            if self.on_bad_row == "raise":
                raise error from issue.__cause__
            self.report.skipped[issue.reason] = self.report.skipped.get(issue.reason, 0) + 1
            self.report.first_error.setdefault(issue.reason, str(error))
            return None
        self.report.kept += 1
        return row

    def finish(self) -> SkipReport:
        """Log what was skipped or dropped (at WARNING when anything was) and return the report."""
        if self.report.skipped or self.report.dropped:
            log.warning("%s", self.report.summary())
            for reason, message in sorted(self.report.first_error.items()):
                log.warning("first skipped row for %s: %s", reason, message)
        else:
            log.debug("%s", self.report.summary())
        return self.report
