"""Row-level validation: every bad-input kind names the file, the row and the field; skip mode counts."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data import SCHEMAS, DataError, RowError, check_messages, read_table, read_table_with_report, write_table

SYSTEM = {"role": "system", "content": "Sign as Ada."}
USER = {"role": "user", "content": "Reverse 'cat'."}
ASSISTANT = {"role": "assistant", "content": "tac"}


def preference(i: int, **changes) -> dict:
    row = {"id": f"c{i}", "prompt": [SYSTEM, USER], "chosen": "tac", "rejected": "cat", "rating": "slightly_better",
           "safety_label": None, "kind": "helpfulness", "is_safety": False, "task": "reverse", "meta": "{}"}
    return {**row, **changes}


def dialogue(i: int, **changes) -> dict:
    return {"id": f"d{i}", "messages": [SYSTEM, USER, ASSISTANT], "source": "world", "meta": "{}", **changes}


def write_raw(path: Path, rows: list[dict], kind: str) -> Path:
    """Write rows with pyarrow directly, bypassing validation, as a foreign tool would."""
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS[kind]), path)
    return path


BAD_PREFERENCES = [
    # (change, field named in the error, reason)
    ({"prompt": [SYSTEM, {"role": "user", "content": "  "}]}, "prompt[1].content", "empty_content"),
    ({"prompt": [{"role": "robot", "content": "hi"}]}, "prompt[0].role", "unknown_role"),
    ({"prompt": [USER, USER]}, "prompt[1].role", "turn_order"),
    ({"prompt": [USER, SYSTEM, USER]}, "prompt[1].role", "turn_order"),
    ({"prompt": [USER, ASSISTANT]}, "prompt[1].role", "turn_order"),
    ({"prompt": [SYSTEM]}, "prompt", "turn_order"),
    ({"prompt": [{"role": "user", "content": "[INST] hi"}]}, "prompt[0].content", "chat_tag"),
    ({"rating": "much_better"}, "rating", "unknown_rating"),
    ({"safety_label": "chosen_unsafe_rejected_safe"}, "safety_label", "unknown_safety_label"),
    ({"rejected": " tac "}, "rejected", "chosen_equals_rejected"),
    ({"chosen": ""}, "chosen", "empty_content"),
    ({"kind": "harmless"}, "kind", "unknown_value"),
    ({"meta": "{not json"}, "meta", "invalid_json"),
    ({"meta": "[1, 2]"}, "meta", "invalid_json"),
]


@pytest.mark.parametrize(("change", "field", "reason"), BAD_PREFERENCES)
def test_bad_preference_row_on_read(tmp_path: Path, change: dict, field: str, reason: str) -> None:
    path = write_raw(tmp_path / "prefs.parquet", [preference(0), preference(1, **change)], "preferences")
    with pytest.raises(DataError) as err:
        read_table(path, "preferences")
    assert str(err.value).startswith(f"{path}: row 1 (id='c1'), field '{field}': expected")
    assert err.value.reason == reason and err.value.row == 1 and err.value.field == field


@pytest.mark.parametrize(("change", "field", "reason"), BAD_PREFERENCES[:4])
def test_bad_preference_row_on_write(tmp_path: Path, change: dict, field: str, reason: str) -> None:
    path = tmp_path / "prefs.parquet"
    with pytest.raises(DataError) as err:
        write_table([preference(0), preference(1, **change)], path, "preferences")
    assert str(err.value).startswith(f"{path}: row 1 (id='c1'), field '{field}': expected")
    assert err.value.reason == reason
    assert not path.exists()


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ({**dialogue(1), "turns": 3}, "turns", "unexpected_field"),
        ({k: v for k, v in dialogue(1).items() if k != "source"}, "source", "missing_field"),
        (dialogue(1, meta=None), "meta", "null_value"),
        (dialogue(1, source=7), "source", "wrong_type"),
        (dialogue(1, messages=[USER, {"role": "assistant"}]), "messages[1]", "wrong_type"),
        (dialogue(1, messages=[SYSTEM, USER]), "messages[1].role", "turn_order"),
    ],
)
def test_mistyped_python_rows_are_refused_on_write(tmp_path: Path, row: dict, field: str, reason: str) -> None:
    path = tmp_path / "d.parquet"
    with pytest.raises(DataError) as err:
        write_table([dialogue(0), row], path, "dialogues")
    assert str(err.value).startswith(f"{path}: row 1 (id='d1'), field '{field}'")
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sample_index": True}, "sample_index"),
        ({"response_tokens": [1, 2.0]}, "response_tokens[1]"),
        ({"response_tokens": [1, 2**31]}, "response_tokens"),
        ({"response_logprobs": [-0.5]}, "response_logprobs"),
        ({"response_logprobs": [-0.5, 0.3]}, "response_logprobs"),
        ({"reward": float("nan")}, "reward"),
        ({"prompt_tokens": []}, "prompt_tokens"),
        ({"iteration": -1}, "iteration"),
    ],
)
def test_bad_rollout_rows(tmp_path: Path, change: dict, field: str) -> None:
    row = {"prompt_id": "p0", "sample_index": 0, "prompt_tokens": [1, 2], "response_tokens": [3, 4],
           "response_logprobs": [-0.5, -0.1], "response_text": "hi", "weight_version": 0, "temperature": 1.0,
           "reward": 0.5, "helpfulness_score": None, "safety_score": None, "stage": "rs", "iteration": 0}
    path = tmp_path / "r.parquet"
    with pytest.raises(DataError) as err:
        write_table([{**row, **change}], path, "rollouts")
    assert str(err.value).startswith(f"{path}: row 0 (stage='rs', iteration=")
    assert "prompt_id='p0', sample_index=" in str(err.value)
    assert f"field '{field}': expected" in str(err.value)


def test_duplicate_id(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "d.parquet", [dialogue(0), dialogue(1), dialogue(0)], "dialogues")
    with pytest.raises(DataError) as err:
        read_table(path, "dialogues")
    assert str(err.value) == (f"{path}: row 2 (id='d0'), field 'id': expected a unique key, found a duplicate of row 0")


def count_words(messages: list[dict]) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word, plus 2 per message."""
    return sum(len(m["content"].split()) + 2 for m in messages)


def test_dialogue_longer_than_context(tmp_path: Path) -> None:
    long = dialogue(1, messages=[USER, {"role": "assistant", "content": "word " * 50}])
    path = write_raw(tmp_path / "d.parquet", [dialogue(0), long], "dialogues")
    assert len(read_table(path, "dialogues", max_tokens=100, count_tokens=count_words)) == 2
    with pytest.raises(DataError) as err:
        read_table(path, "dialogues", max_tokens=40, count_tokens=count_words)
    assert str(err.value) == (
        f"{path}: row 1 (id='d1'), field 'messages': expected at most 40 tokens (the model's context), found 56"
    )


def test_preference_answer_longer_than_context(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "p.parquet", [preference(0, rejected="no " * 30)], "preferences")
    with pytest.raises(DataError, match=r"row 0 \(id='c0'\), field 'rejected': expected at most 20 tokens"):
        read_table(path, "preferences", max_tokens=20, count_tokens=count_words)


def test_tokenizer_failure_is_located(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "d.parquet", [dialogue(0)], "dialogues")

    def broken(messages: list[dict]) -> int:
        raise RuntimeError("tokenizer exploded")

    with pytest.raises(DataError) as err:
        read_table(path, "dialogues", max_tokens=10, count_tokens=broken)
    assert str(err.value) == (f"{path}: row 0 (id='d0'), field 'messages': expected text that count_tokens can "
                              "measure, but it failed: tokenizer exploded")
    assert isinstance(err.value.__cause__, RuntimeError)


def test_skip_mode_counts_every_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        preference(0),
        preference(1, rating="very_much_better"),
        preference(2, rejected="tac"),
        preference(0),  # duplicate of row 0
        preference(4, prompt=[ASSISTANT]),
        preference(5, rating="unsure"),
        preference(6, chosen="word " * 40),
        preference(7, safety_label="both_unsafe", kind="safety", is_safety=True),
    ]
    path = write_raw(tmp_path / "p.parquet", rows, "preferences")
    with caplog.at_level(logging.WARNING, logger="pipelines.data.validate"):
        kept, report = read_table_with_report(
            path, "preferences", on_bad_row="skip", max_tokens=30, count_tokens=count_words
        )
    assert [r["id"] for r in kept] == ["c0", "c7"]
    assert report.skipped == {"unknown_rating": 2, "chosen_equals_rejected": 1, "duplicate_id": 1,
                              "turn_order": 1, "too_long": 1}
    assert (report.total, report.kept, report.num_skipped, report.dropped) == (8, 2, 6, {})
    assert "kept 2 of 8 rows; skipped 6 bad rows" in caplog.text
    assert f"{path}: row 3 (id='c0'), field 'id'" in report.first_error["duplicate_id"]


def test_check_messages_accepts_valid_dialogues() -> None:
    check_messages([USER], last_role="user")
    check_messages([SYSTEM, USER, ASSISTANT, USER], last_role="user")
    check_messages([USER, ASSISTANT], last_role="assistant")
    with pytest.raises(RowError, match=r"field 'messages\[0\].role': expected 'user'"):
        check_messages([ASSISTANT], last_role="assistant")


def test_errors_survive_pickling(tmp_path: Path) -> None:
    """Errors raised inside Ray actors travel pickled; the message and fields must survive."""
    path = write_raw(tmp_path / "d.parquet", [dialogue(0), dialogue(0)], "dialogues")
    with pytest.raises(DataError) as err:
        read_table(path, "dialogues")
    copy = pickle.loads(pickle.dumps(err.value))
    assert (str(copy), copy.row, copy.field, copy.reason) == (str(err.value), 1, "id", "duplicate_id")
    row_error = pickle.loads(pickle.dumps(RowError("rating", "unknown_rating", "expected a label")))
    assert (str(row_error), row_error.reason) == ("field 'rating': expected a label", "unknown_rating")
