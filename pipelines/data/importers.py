"""Importers from common public formats into the pipeline's schemas (DESIGN.md "Data").

- `import_pairs`: JSONL or Parquet with `prompt`/`chosen`/`rejected` columns -> "preferences".
- `import_messages`: OpenAI-style JSONL (or Parquet) with a `messages` list -> "dialogues".
- `import_hh`: Anthropic-HH-style `chosen`/`rejected` transcripts -> "preferences".

Conventions shared by all importers:
- Input is `.jsonl` (UTF-8, one JSON object per line; blank lines ignored) or `.parquet`. Errors name
  the file, the 1-based line (JSONL) or 0-based row (Parquet), and the field.
- Ids: a string `id` field is kept; without one the id is `f"{file stem}-{record index}"` (0-based
  record number), stable as long as the file is unchanged.
- Fields an importer does not map are kept, with the source file and record number, in `meta`
  (a JSON object): `{"source_file": ..., "source_index": ..., "extra": {...}}`.
- Ratings: the four labels of RATINGS, or a text alias that differs only in case, spaces or hyphens
  ("Significantly better", "slightly-better"), or "unsure" / "negligibly better/unsure" (the paper's
  wording) -> "negligibly_better". Numbers are refused (scales differ between datasets: pass
  `rating_map`, e.g. {0: "significantly_better", ...}, to say what they mean). A pair with no rating
  gets `default_rating`, "negligibly_better" by default: its margin is 0 in both of the paper's
  margin tables (section 3.2.2), so unlabelled pairs train with the plain binary ranking loss.
- Safety labels (`safety_label`, or booleans `chosen_safe` and `rejected_safe`): pairs whose chosen
  answer is unsafe and rejected answer safe are dropped, as in the paper (section 3.2.1), and counted
  in the report's `dropped`.
- `on_bad_row="skip"` skips bad records and counts them per reason in the report; default: raise.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.data.io import iter_records, write_table
from pipelines.data.schemas import PREFERENCE_KINDS, RATINGS, SAFETY_LABELS
from pipelines.data.validate import CountTokens, DataError, DropRow, OnBadRow, RowError, RowValidator, SkipReport

log = logging.getLogger(__name__)

RATING_ALIASES = {"unsure": "negligibly_better", "negligibly_better_unsure": "negligibly_better"}
DROP_UNSAFE_CHOSEN = "chosen_unsafe_rejected_safe"
_BOOL_SAFETY = {
    (True, False): "chosen_safe_rejected_unsafe",
    (True, True): "both_safe",
    (False, False): "both_unsafe",
    (False, True): DROP_UNSAFE_CHOSEN,
}
_HH_MARKER = re.compile(r"(?:^|\n\n)(Human|Assistant):[ ]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
# Record fields each importer maps into the schema; any other field goes to `meta["extra"]`.
_PAIR_FIELDS = ("id", "prompt", "chosen", "rejected", "rating", "safety_label", "chosen_safe", "rejected_safe",
                "task", "kind", "is_safety")
_HH_FIELDS = tuple(f for f in _PAIR_FIELDS if f != "prompt")
_MESSAGES_FIELDS = ("id", "messages", "source")
# A record (with its file and 0-based index) -> a row of the target schema; raises RowError or DropRow.
Converter = Callable[[Mapping[str, Any], Path, int], dict[str, Any]]


@dataclass
class ImportResult:
    """The imported rows (already validated), what was skipped/dropped, and the output file if any."""

    rows: list[dict[str, Any]]
    report: SkipReport
    out: Path | None = None


# ---------------------------------------------------------------- field conversions


def _require(record: Mapping[str, Any], name: str) -> Any:
    if name not in record or record[name] is None:
        detail = f"expected this field in every record, found it missing (fields: {sorted(record)})"
        raise RowError(name, "missing_field", detail)
    return record[name]


def _string(record: Mapping[str, Any], name: str) -> str:
    value = _require(record, name)
    if not isinstance(value, str):
        raise RowError(name, "wrong_type", f"expected a string, found {type(value).__name__} {value!r:.40}")
    return value


def _optional(record: Mapping[str, Any], name: str, type_: type, default: Any) -> Any:
    value = record.get(name)
    if value is None:
        return default
    if type(value) is not type_:
        raise RowError(name, "wrong_type", f"expected {type_.__name__}, found {type(value).__name__} {value!r:.40}")
    return value


def _messages(value: Any, name: str) -> list[dict[str, str]]:
    """A messages list as given (roles and order are checked by the schema validator)."""
    if not isinstance(value, list):
        found = type(value).__name__
        raise RowError(name, "wrong_type", f"expected a list of {{role, content}} objects, found {found}")
    for i, message in enumerate(value):
        if not isinstance(message, Mapping) or sorted(message) != ["content", "role"]:
            found = sorted(message) if isinstance(message, Mapping) else type(message).__name__
            detail = f"expected an object with exactly the keys ['role', 'content'], found {found}"
            raise RowError(f"{name}[{i}]", "wrong_type", detail)
    return [{"role": m["role"], "content": m["content"]} for m in value]


def normalize_rating(value: Any, rating_map: Mapping[Any, str] | None = None) -> str:
    """One of RATINGS from a label, a documented alias, or a `rating_map` key; else RowError."""
    if rating_map is not None and isinstance(value, Hashable) and not isinstance(value, bool) and value in rating_map:
        mapped = rating_map[value]
        if mapped not in RATINGS:
            raise ValueError(f"rating_map[{value!r}] = {mapped!r} is not one of {RATINGS}")
        return mapped
    if isinstance(value, str):
        key = re.sub(r"[\s/-]+", "_", value.strip().lower())
        if key in RATINGS:
            return key
        if key in RATING_ALIASES:
            return RATING_ALIASES[key]
    raise RowError(
        "rating", "unknown_rating",
        f"expected one of {list(RATINGS)} (or an alias: case/spaces/hyphens, {sorted(RATING_ALIASES)}"
        f"{', or a rating_map key' if rating_map else ''}), found {value!r:.40}",
    )


def _safety_label(record: Mapping[str, Any]) -> str | None:
    """The safety bin from `safety_label` or `chosen_safe`/`rejected_safe`; both must agree if given."""
    label = record.get("safety_label")
    if label is not None and label not in (*SAFETY_LABELS, DROP_UNSAFE_CHOSEN):
        detail = f"expected one of {[*SAFETY_LABELS, DROP_UNSAFE_CHOSEN]}, found {label!r:.40}"
        raise RowError("safety_label", "unknown_safety_label", detail)
    flags = {name: record.get(name) for name in ("chosen_safe", "rejected_safe")}
    given = [name for name, v in flags.items() if v is not None]
    if not given:
        return label
    if len(given) == 1:
        missing = "rejected_safe" if given == ["chosen_safe"] else "chosen_safe"
        raise RowError(missing, "missing_field", f"expected it together with '{given[0]}', found it missing")
    for name, v in flags.items():
        if type(v) is not bool:
            raise RowError(name, "wrong_type", f"expected a boolean, found {type(v).__name__} {v!r:.40}")
    from_flags = _BOOL_SAFETY[(flags["chosen_safe"], flags["rejected_safe"])]
    if label is not None and label != from_flags:
        detail = f"expected {from_flags!r} (from chosen_safe/rejected_safe), found {label!r}"
        raise RowError("safety_label", "unknown_safety_label", detail)
    return from_flags


def _meta(record: Mapping[str, Any], used: Sequence[str], source: Path, index: int) -> str:
    extra = {k: v for k, v in record.items() if k not in used}
    meta: dict[str, Any] = {"source_file": source.name, "source_index": index}
    if extra:
        meta["extra"] = extra
    try:
        return json.dumps(meta, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        detail = f"expected JSON-serializable extra fields {sorted(extra)}: {exc}"
        raise RowError("meta", "wrong_type", detail) from None


def _record_id(record: Mapping[str, Any], source: Path, index: int) -> str:
    if record.get("id") is None:
        return f"{source.stem}-{index}"
    return _string(record, "id")


def _id_hint(record: Any, source: Path, index: int) -> str | None:
    """The id a record will get, for errors raised before its row exists."""
    if not isinstance(record, Mapping) or record.get("id") is None:
        return f"{source.stem}-{index}"
    return record["id"] if isinstance(record["id"], str) else None


def _build(convert: Converter, record: Any, source: Path, index: int) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise RowError("*", "wrong_type", f"expected a JSON object per record, found {type(record).__name__}")
    return convert(record, source, index)


# ---------------------------------------------------------------- the import loop


@dataclass(frozen=True)
class _Options:
    """Importer settings shared by every record of one file."""

    kind: str = "helpfulness"
    task: str = "imported"
    is_safety: bool | None = None  # None: kind == "safety"
    default_rating: str = "negligibly_better"
    rating_map: Mapping[Any, str] | None = None


def _run(
    path: str | os.PathLike[str],
    kind: str,
    convert: Converter,
    *,
    required: tuple[str, ...],
    out: str | os.PathLike[str] | None,
    on_bad_row: OnBadRow,
    max_tokens: int | None,
    count_tokens: CountTokens | None,
) -> ImportResult:
    source = Path(path)
    validator = RowValidator(kind, source, on_bad_row=on_bad_row, max_tokens=max_tokens, count_tokens=count_tokens)
    rows = []
    for index, line, record in iter_records(source, required):
        build = functools.partial(_build, convert, record, source, index)
        row = validator.accept(build, index=index, line=line, row_id=_id_hint(record, source, index))
        if row is not None:
            rows.append(row)
    report = validator.finish()
    written = write_table(rows, out, kind) if out is not None else None
    log.info("imported %s", report.summary())
    return ImportResult(rows=rows, report=report, out=written)


def _check_options(options: _Options) -> None:
    if options.kind not in PREFERENCE_KINDS:
        raise ValueError(f"kind must be one of {PREFERENCE_KINDS}, found {options.kind!r}")
    if options.default_rating not in RATINGS:
        raise ValueError(f"default_rating must be one of {RATINGS}, found {options.default_rating!r}")


def _preference_row(
    record: Mapping[str, Any], source: Path, index: int, options: _Options,
    prompt: list[dict[str, str]], chosen: str, rejected: str, used: Sequence[str],
) -> dict[str, Any]:
    label = _safety_label(record)
    if label == DROP_UNSAFE_CHOSEN:
        raise DropRow(DROP_UNSAFE_CHOSEN)  # section 3.2.1: such pairs are not used
    rating = record.get("rating")
    kind = _optional(record, "kind", str, options.kind)
    is_safety = options.is_safety if options.is_safety is not None else kind == "safety"
    return {
        "id": _record_id(record, source, index),
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "rating": options.default_rating if rating is None else normalize_rating(rating, options.rating_map),
        "safety_label": label,
        "kind": kind,
        "is_safety": _optional(record, "is_safety", bool, is_safety),
        "task": _optional(record, "task", str, options.task),
        "meta": _meta(record, used, source, index),
    }


# ---------------------------------------------------------------- prompt/chosen/rejected pairs


def _pair_row(record: Mapping[str, Any], source: Path, index: int, options: _Options) -> dict[str, Any]:
    prompt = _require(record, "prompt")
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else _messages(prompt, "prompt")
    chosen, rejected = _string(record, "chosen"), _string(record, "rejected")
    return _preference_row(record, source, index, options, messages, chosen, rejected, _PAIR_FIELDS)


def import_pairs(
    path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    kind: str = "helpfulness",
    task: str = "imported",
    is_safety: bool | None = None,
    default_rating: str = "negligibly_better",
    rating_map: Mapping[Any, str] | None = None,
    on_bad_row: OnBadRow = "raise",
    max_tokens: int | None = None,
    count_tokens: CountTokens | None = None,
) -> ImportResult:
    """Preference rows from records with `prompt` (a string or a messages list), `chosen`, `rejected`.

    Optional per-record fields: `id`, `rating`, `safety_label` or `chosen_safe`+`rejected_safe`,
    `task`, `kind`, `is_safety`; `kind`/`task`/`is_safety` arguments are the defaults when absent
    (`is_safety` defaults to kind == "safety"). See the module docstring for ratings and ids.
    Writes the rows to `out` (validated, atomic) when given.
    """
    options = _Options(kind=kind, task=task, is_safety=is_safety, default_rating=default_rating, rating_map=rating_map)
    _check_options(options)
    return _run(
        path, "preferences", lambda r, s, i: _pair_row(r, s, i, options), required=("prompt", "chosen", "rejected"),
        out=out, on_bad_row=on_bad_row, max_tokens=max_tokens, count_tokens=count_tokens,
    )


# ---------------------------------------------------------------- OpenAI-style messages


def import_messages(
    path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    source: str | None = None,
    on_bad_row: OnBadRow = "raise",
    max_tokens: int | None = None,
    count_tokens: CountTokens | None = None,
) -> ImportResult:
    """Dialogue rows from records with a `messages` list of `{role, content}` (system/user/assistant).

    A dialogue must end with an assistant turn. `source` is a record's `source` field, else the
    `source` argument, else the file stem.
    """

    def convert(record: Mapping[str, Any], file: Path, index: int) -> dict[str, Any]:
        return {
            "id": _record_id(record, file, index),
            "messages": _messages(_require(record, "messages"), "messages"),
            "source": _optional(record, "source", str, source or file.stem),
            "meta": _meta(record, _MESSAGES_FIELDS, file, index),
        }

    return _run(path, "dialogues", convert, required=("messages",), out=out, on_bad_row=on_bad_row,
                max_tokens=max_tokens, count_tokens=count_tokens)


# ---------------------------------------------------------------- Anthropic HH transcripts


def parse_hh_transcript(text: str) -> list[dict[str, str]]:
    """Messages of an HH transcript "\n\nHuman: ...\n\nAssistant: ..." (roles user/assistant).

    The transcript must start with a "Human:" marker (leading blank lines allowed); each turn's text
    is stripped. Raises ValueError for text before the first marker or a transcript with no turns;
    role order and empty turns are left to the schema validator, which names the turn.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a transcript string, found {type(text).__name__}")
    body = text.lstrip("\n")
    markers = list(_HH_MARKER.finditer(body))
    if not markers or markers[0].start() != 0:
        raise ValueError(f"expected the transcript to start with 'Human:', found {body[:40]!r}")
    messages = []
    for marker, following in zip(markers, [*markers[1:], None]):
        end = following.start() if following is not None else len(body)
        messages.append({"role": _HH_ROLES[marker.group(1)], "content": body[marker.end():end].strip()})
    return messages


def _transcript(record: Mapping[str, Any], name: str) -> list[dict[str, str]]:
    text = _string(record, name)
    try:
        messages = parse_hh_transcript(text)
    except ValueError as exc:
        raise RowError(name, "turn_order", str(exc)) from None
    if messages[-1]["role"] != "assistant":
        detail = f"expected the transcript to end with an 'Assistant:' turn, found {len(messages)} ending with 'Human:'"
        raise RowError(name, "turn_order", detail)
    return messages


def _hh_row(record: Mapping[str, Any], source: Path, index: int, options: _Options) -> dict[str, Any]:
    chosen, rejected = _transcript(record, "chosen"), _transcript(record, "rejected")
    if chosen[:-1] != rejected[:-1]:
        differing = (i for i, (a, b) in enumerate(zip(chosen[:-1], rejected[:-1])) if a != b)
        turn = next(differing, min(len(chosen), len(rejected)) - 1)  # else one prompt is a prefix of the other
        raise RowError(
            "rejected", "prompt_mismatch",
            f"expected the same prompt as 'chosen' (all turns but the last), found a difference at turn {turn} "
            f"({len(chosen) - 1} vs {len(rejected) - 1} prompt turns)",
        )
    answers = chosen[-1]["content"], rejected[-1]["content"]
    return _preference_row(record, source, index, options, chosen[:-1], *answers, _HH_FIELDS)


def import_hh(
    path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    kind: str = "helpfulness",
    task: str = "hh",
    is_safety: bool | None = None,
    default_rating: str = "negligibly_better",
    on_bad_row: OnBadRow = "raise",
    max_tokens: int | None = None,
    count_tokens: CountTokens | None = None,
) -> ImportResult:
    """Preference rows from HH records whose `chosen`/`rejected` are full transcripts.

    The transcripts must share every turn but the last (the prompt); their final assistant turns are
    the chosen and rejected answers. HH has no strength labels, so every pair gets `default_rating`.
    Use kind="safety" for the harmlessness subsets.
    """
    options = _Options(kind=kind, task=task, is_safety=is_safety, default_rating=default_rating)
    _check_options(options)
    return _run(
        path, "preferences", lambda r, s, i: _hh_row(r, s, i, options), required=("chosen", "rejected"),
        out=out, on_bad_row=on_bad_row, max_tokens=max_tokens, count_tokens=count_tokens,
    )


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pipelines.data.importers {pairs,messages,hh} IN OUT [--kind K] [--skip-bad-rows]`."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.data.importers", description=__doc__.split("\n")[0])
    parser.add_argument("format", choices=("pairs", "messages", "hh"))
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path, help="the Parquet file to write")
    parser.add_argument("--kind", choices=PREFERENCE_KINDS, default="helpfulness", help="preference kind (pairs, hh)")
    parser.add_argument("--skip-bad-rows", action="store_true", help="skip and count bad records instead of failing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    on_bad_row: OnBadRow = "skip" if args.skip_bad_rows else "raise"
    try:
        if args.format == "messages":
            result = import_messages(args.input, out=args.output, on_bad_row=on_bad_row)
        else:
            importer = import_pairs if args.format == "pairs" else import_hh
            result = importer(args.input, out=args.output, kind=args.kind, on_bad_row=on_bad_row)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{result.report.summary()} -> {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
