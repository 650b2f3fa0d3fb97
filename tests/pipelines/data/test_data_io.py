"""Parquet round trips, deterministic bytes, atomic writes and file-level errors of the data layer."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data import SCHEMAS, DataError, read_arrow, read_table, read_table_with_report, write_table
from pipelines.data import io as data_io


def make_row(kind: str, i: int) -> dict:
    """A valid row of `kind`; float values are exact in float32 so round trips compare equal."""
    messages = [
        {"role": "system", "content": "Answer in upper case."},
        {"role": "user", "content": f"What is {i} + 1?"},
    ]
    rows = {
        "text": {"id": f"t{i}", "text": f"document {i}: the cat sat."},
        "prompts": {"id": f"p{i}", "messages": messages, "kind": "helpful", "task": "arithmetic",
                    "is_safety": False, "meta": json.dumps({"answer": i + 1}), "split": "train"},
        "dialogues": {"id": f"d{i}", "messages": [*messages, {"role": "assistant", "content": str(i + 1)}],
                      "source": "world", "meta": "{}"},
        "preferences": {"id": f"c{i}", "prompt": messages, "chosen": str(i + 1), "rejected": "I cannot help.",
                        "rating": "better", "safety_label": "both_safe" if i % 2 else None, "kind": "helpfulness",
                        "is_safety": False, "task": "arithmetic", "meta": "{}"},
        "rollouts": {"prompt_id": f"p{i}", "sample_index": i, "prompt_tokens": [1, 5, 9], "response_tokens": [7, 2],
                     "response_logprobs": [-0.5, -0.25], "response_text": "42", "weight_version": 3,
                     "temperature": 0.75, "reward": -1.5, "helpfulness_score": 0.5 if i % 2 else None,
                     "safety_score": None, "stage": "ppo", "iteration": 2},
        "eval_results": {"checkpoint": "sft", "stage": "sft", "prompt_id": f"p{i}", "kind": "adversarial",
                         "task": "criminal", "turn": 1, "answer": "No.", "helpfulness": 0.0, "refusal": True,
                         "violation": False, "adherence": None if i % 2 else True},
    }
    return rows[kind]


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_round_trip_every_kind(tmp_path: Path, kind: str) -> None:
    rows = [make_row(kind, i) for i in range(3)]
    path = write_table(rows, tmp_path / "sub" / f"{kind}.parquet", kind)
    assert read_table(path, kind) == rows
    table = read_arrow(path, kind)
    assert table.schema == SCHEMAS[kind]
    assert table.num_rows == 3


def test_round_trip_from_arrow_table_and_empty(tmp_path: Path) -> None:
    rows = [make_row("preferences", i) for i in range(2)]
    table = pa.Table.from_pylist(rows, schema=SCHEMAS["preferences"])
    path = write_table(table, tmp_path / "prefs.parquet", "preferences")
    assert read_table(path, "preferences") == rows
    empty = write_table([], tmp_path / "empty.parquet", "rollouts")
    assert read_table(empty, "rollouts") == []


def test_same_rows_give_same_bytes(tmp_path: Path) -> None:
    rows = [make_row("rollouts", i) for i in range(4)]
    reordered_keys = [dict(reversed(list(row.items()))) for row in rows]
    a = write_table(rows, tmp_path / "a.parquet", "rollouts").read_bytes()
    b = write_table(reordered_keys, tmp_path / "b.parquet", "rollouts").read_bytes()
    assert a == b
    assert set(pq.ParquetFile(tmp_path / "a.parquet").metadata.metadata) == {b"ARROW:schema"}
    other = write_table(rows[:3], tmp_path / "c.parquet", "rollouts").read_bytes()
    assert other != a


def test_failed_validation_keeps_previous_file(tmp_path: Path) -> None:
    path = write_table([make_row("dialogues", 0)], tmp_path / "d.parquet", "dialogues")
    before = path.read_bytes()
    bad = [make_row("dialogues", 1), {**make_row("dialogues", 2), "source": ""}]
    with pytest.raises(DataError) as err:
        write_table(bad, path, "dialogues")
    assert f"{path}: row 1 (id='d2'), field 'source'" in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]


def test_failed_write_keeps_previous_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_table([make_row("text", 0)], tmp_path / "t.parquet", "text")
    before = path.read_bytes()

    def broken_write(table: pa.Table, where, **kwargs) -> None:
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(data_io.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_table([make_row("text", 1)], path, "text")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    with pytest.raises(DataError, match=f"{path}: no such file") as err:
        read_table(path, "prompts")
    assert err.value.reason == "missing_file"


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text("id,text\n1,hello\n")
    with pytest.raises(DataError, match=f"{path}: not a readable Parquet file"):
        read_table(path, "text")


def test_missing_column_raises_even_when_skipping(tmp_path: Path) -> None:
    path = tmp_path / "prompts.parquet"
    rows = [make_row("prompts", 0)]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS["prompts"]).drop_columns(["split"]), path)
    with pytest.raises(DataError) as err:
        read_table(path, "prompts", on_bad_row="skip")
    assert str(path) in str(err.value) and "field 'split'" in str(err.value)
    assert "missing column(s) ['split']" in str(err.value)


@pytest.mark.parametrize(
    ("column", "arrow_type", "value"),
    [
        ("sample_index", pa.int64(), 0),
        ("temperature", pa.float64(), 0.75),
        ("prompt_tokens", pa.list_(pa.int64()), [1]),
    ],
)
def test_mistyped_column(tmp_path: Path, column: str, arrow_type: pa.DataType, value) -> None:
    path = tmp_path / "rollouts.parquet"
    schema = SCHEMAS["rollouts"]
    schema = schema.set(schema.get_field_index(column), pa.field(column, arrow_type))
    pq.write_table(pa.Table.from_pylist([{**make_row("rollouts", 0), column: value}], schema=schema), path)
    with pytest.raises(DataError) as err:
        read_table(path, "rollouts")
    expected = SCHEMAS["rollouts"].field(column).type
    found = pq.read_schema(path).field(column).type  # the file's spelling (list child names differ)
    assert str(err.value) == f"{path}: field '{column}': wrong column type: expected {expected}, found {found}"


def test_unexpected_column(tmp_path: Path) -> None:
    path = tmp_path / "text.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": ["b"], "score": [1.0]}), path)
    with pytest.raises(DataError, match=r"field 'score': unexpected column\(s\) \['score'\]"):
        read_table(path, "text")


def test_large_string_and_large_list_are_read_losslessly(tmp_path: Path) -> None:
    path = tmp_path / "dialogues.parquet"
    rows = [make_row("dialogues", i) for i in range(2)]
    message = pa.struct([("role", pa.large_string()), ("content", pa.large_string())])
    schema = pa.schema([("id", pa.large_string()), ("messages", pa.large_list(message)),
                        ("source", pa.string()), ("meta", pa.large_string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    assert read_table(path, "dialogues") == rows
    assert read_arrow(path, "dialogues").schema == SCHEMAS["dialogues"]


def test_null_in_required_field_of_foreign_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "eval.parquet"
    loose = pa.schema([pa.field(f.name, f.type, nullable=True) for f in SCHEMAS["eval_results"]])
    rows = [make_row("eval_results", 0), {**make_row("eval_results", 1), "refusal": None}]
    pq.write_table(pa.Table.from_pylist(rows, schema=loose), path)
    with pytest.raises(DataError) as err:
        read_table(path, "eval_results")
    assert f"{path}: row 1 (checkpoint='sft', stage='sft', prompt_id='p1', turn=1), field 'refusal'" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="pipelines.data.validate"):
        kept, report = read_table_with_report(path, "eval_results", on_bad_row="skip")
    assert kept == rows[:1]
    assert report.skipped == {"null_value": 1} and report.kept == 1 and report.total == 2
    assert "skipped 1 bad rows" in caplog.text


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    path = write_table([make_row("text", 0)], tmp_path / "t.parquet", "text")
    with pytest.raises(ValueError, match="unknown dataset kind 'texts'"):
        read_table(path, "texts")
    with pytest.raises(ValueError, match="on_bad_row must be 'raise' or 'skip'"):
        read_table(path, "text", on_bad_row="ignore")
    with pytest.raises(ValueError, match="max_tokens does not apply to 'text'"):
        read_table(path, "text", max_tokens=10, count_tokens=len)
    with pytest.raises(ValueError, match="needs count_tokens"):
        read_table(path, "dialogues", max_tokens=10)


def test_numpy_scalars_are_numbers_not_errors(tmp_path: Path) -> None:
    import numpy as np

    row = {**make_row("rollouts", 0), "prompt_tokens": [np.int64(1), 5], "reward": np.float32(-1.5),
           "sample_index": np.int32(0), "response_logprobs": [np.float64(-0.5), -0.25]}
    path = write_table([row], tmp_path / "r.parquet", "rollouts")
    assert read_table(path, "rollouts") == [{**make_row("rollouts", 0), "prompt_tokens": [1, 5]}]
    evals = {**make_row("eval_results", 0), "refusal": np.bool_(True)}
    path = write_table([evals], tmp_path / "e.parquet", "eval_results")
    assert read_table(path, "eval_results")[0]["refusal"] is True
    with pytest.raises(DataError, match=r"sample_index=0\), field 'prompt_tokens\[0\]': expected int32, found bool"):
        write_table([{**row, "prompt_tokens": [np.bool_(True)]}], tmp_path / "r.parquet", "rollouts")
