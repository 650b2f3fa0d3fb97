"""Read and write the pipeline's Parquet datasets, validated (DESIGN.md "Data").

`write_table` validates every row before writing anything, then writes atomically (a temporary file
in the same directory, fsync, `os.replace`), so a failed write never destroys an existing file, and
the bytes depend only on the rows (pyarrow writes no timestamps). `read_table` checks the file's
columns and types against the kind's schema (file-level problems always raise), then every row
(bad rows raise, or are skipped and counted with `on_bad_row="skip"`).

Type compatibility on read: a column must have the schema's type, except that the 64-bit-offset and
view variants of strings and lists (`large_string`, `string_view`, `large_list`) and
dictionary-encoded strings, as written by pandas or polars, are read as their plain equivalents;
this is lossless. Anything else (e.g. int64 for an int32 column, double for float) is an error.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data.schemas import schema_for
from pipelines.data.validate import CountTokens, DataError, OnBadRow, RowValidator, SkipReport

log = logging.getLogger(__name__)

# Fixed writer options: the same rows give the same bytes.
_WRITE_OPTIONS: dict[str, Any] = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}


# View layouts exist from pyarrow 16 on; pyproject allows older versions.
_is_string_view = getattr(pa.types, "is_string_view", lambda t: False)
_is_list_view = getattr(pa.types, "is_list_view", lambda t: False)


def _canonical(type_: pa.DataType) -> object:
    """A comparable form of an arrow type, blind to lossless representation differences."""
    if pa.types.is_dictionary(type_):
        return _canonical(type_.value_type)
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or _is_string_view(type_):
        return "string"
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) or _is_list_view(type_):
        return ("list", _canonical(type_.value_type))
    if pa.types.is_struct(type_):
        fields = (type_.field(i) for i in range(type_.num_fields))
        return ("struct", tuple((f.name, _canonical(f.type)) for f in fields))
    return str(type_)


def check_arrow_schema(found: pa.Schema, kind: str, path: object) -> None:
    """Raise DataError unless `found` has exactly the kind's columns with compatible types."""
    expected = schema_for(kind)
    missing = [n for n in expected.names if n not in found.names]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; the {kind} schema has {expected.names}",
                        field=", ".join(missing), reason="missing_column")
    extra = [n for n in found.names if n not in expected.names]
    if extra:
        raise DataError(path, f"unexpected column(s) {extra}; the {kind} schema has exactly {expected.names}",
                        field=", ".join(extra), reason="unexpected_column")
    duplicated = sorted({n for n in found.names if found.names.count(n) > 1})
    if duplicated:
        raise DataError(path, f"column(s) {duplicated} appear more than once", field=", ".join(duplicated),
                        reason="duplicate_column")
    for f in expected:
        got = found.field(f.name).type
        if _canonical(got) != _canonical(f.type):
            raise DataError(path, f"wrong column type: expected {f.type}, found {got}", field=f.name,
                            reason="wrong_column_type")


def _validated_rows(
    rows: list[dict[str, Any]], validator: RowValidator, names: list[str]
) -> list[dict[str, Any]]:
    kept = []
    for index, row in enumerate(rows):
        good = validator.accept(row, index=index)
        if good is not None:
            kept.append({name: good[name] for name in names})  # schema column order
    return kept


def write_table(rows: list[dict[str, Any]] | pa.Table, path: str | os.PathLike[str], kind: str) -> Path:
    """Validate every row of `kind`, then write them to `path` atomically; returns the path.

    Any bad row raises DataError (naming `path`, the row and the field) before a byte is written.
    """
    schema, target = schema_for(kind), Path(path)
    if isinstance(rows, pa.Table):
        check_arrow_schema(rows.schema, kind, target)
        rows = rows.to_pylist()
    elif not isinstance(rows, list):
        found = type(rows).__name__
        raise TypeError(f"write_table({target}): expected a list of row dicts or a pyarrow Table, found {found}")
    validator = RowValidator(kind, target, on_bad_row="raise")
    table = pa.Table.from_pylist(_validated_rows(rows, validator, schema.names), schema=schema)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f, **_WRITE_OPTIONS)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(target.parent)
    log.debug("wrote %d %s rows to %s", table.num_rows, kind, target)
    return target


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); platforms without directory fds skip this."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_parquet(path: Path) -> pq.ParquetFile:
    if not path.exists():
        raise DataError(path, "no such file; expected a Parquet dataset here", reason="missing_file")
    if not path.is_file():
        raise DataError(path, "expected a Parquet file, found a directory or special file", reason="not_parquet")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file: {exc}", reason="not_parquet") from exc


def read_table_with_report(
    path: str | os.PathLike[str],
    kind: str,
    *,
    max_tokens: int | None = None,
    count_tokens: CountTokens | None = None,
    on_bad_row: OnBadRow = "raise",
) -> tuple[list[dict[str, Any]], SkipReport]:
    """Read and validate a `kind` dataset; returns its rows (schema column order) and a SkipReport.

    With `max_tokens`, rows must fit the model's context: `count_tokens(messages)` of each prompt,
    dialogue, and preference prompt + answer (rollouts count their token lists). Missing file, not
    Parquet, missing/unexpected column and wrong column type always raise; bad rows raise unless
    `on_bad_row="skip"`, which skips them and counts them per reason (logged at WARNING).
    """
    source = Path(path)
    validator = RowValidator(kind, source, on_bad_row=on_bad_row, max_tokens=max_tokens, count_tokens=count_tokens)
    parquet = _open_parquet(source)
    check_arrow_schema(parquet.schema_arrow, kind, source)
    try:
        rows = parquet.read().to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(source, f"could not decode the Parquet data: {exc}", reason="not_parquet") from exc
    kept = _validated_rows(rows, validator, schema_for(kind).names)
    return kept, validator.finish()


def read_table(
    path: str | os.PathLike[str],
    kind: str,
    *,
    max_tokens: int | None = None,
    count_tokens: CountTokens | None = None,
    on_bad_row: OnBadRow = "raise",
) -> list[dict[str, Any]]:
    """`read_table_with_report` without the report (skips, if any, are still logged)."""
    rows, _ = read_table_with_report(
        path, kind, max_tokens=max_tokens, count_tokens=count_tokens, on_bad_row=on_bad_row
    )
    return rows


def read_arrow(
    path: str | os.PathLike[str],
    kind: str,
    *,
    max_tokens: int | None = None,
    count_tokens: CountTokens | None = None,
    on_bad_row: OnBadRow = "raise",
) -> pa.Table:
    """`read_table` as a pyarrow Table with exactly the kind's schema."""
    rows = read_table(path, kind, max_tokens=max_tokens, count_tokens=count_tokens, on_bad_row=on_bad_row)
    return pa.Table.from_pylist(rows, schema=schema_for(kind))


# ---------------------------------------------------------------- foreign inputs (importers)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, int, Any]]:
    offset, index = 0, 0
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    path, f"expected UTF-8 text, found byte 0x{raw[exc.start]:02x} at byte offset {offset + exc.start} "
                    f"of the file (column {exc.start + 1})", line=line_no, reason="encoding",
                ) from None
            offset += len(raw)
            if not text.strip():  # blank lines hold no record; line numbers stay those of the file
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                detail = f"expected one JSON object per line, found invalid JSON: {exc}"
                raise DataError(path, detail, line=line_no, reason="invalid_json") from None
            yield index, line_no, record
            index += 1


def iter_records(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> Iterator[tuple[int, int | None, Any]]:
    """Records of a JSONL (`.jsonl`) or Parquet (`.parquet`) file as (index, line or None, record).

    `index` is the 0-based record number; `line` the 1-based line of a JSONL file (None for Parquet).
    Non-UTF-8 bytes and invalid JSON raise DataError naming the line and byte offset; a Parquet file
    missing a `required` column raises before any record is produced.
    """
    source = Path(path)
    if not source.exists():
        raise DataError(source, "no such file", reason="missing_file")
    if source.suffix == ".jsonl":
        yield from _iter_jsonl(source)
        return
    if source.suffix != ".parquet":
        detail = f"expected a .jsonl or .parquet file, found suffix {source.suffix!r}"
        raise DataError(source, detail, reason="unknown_format")
    parquet = _open_parquet(source)
    missing = [n for n in required if n not in parquet.schema_arrow.names]
    if missing:
        raise DataError(source, f"missing column(s) {missing}; found {parquet.schema_arrow.names}",
                        field=", ".join(missing), reason="missing_column")
    try:
        rows = parquet.read().to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(source, f"could not decode the Parquet data: {exc}", reason="not_parquet") from exc
    for index, row in enumerate(rows):
        yield index, None, row
