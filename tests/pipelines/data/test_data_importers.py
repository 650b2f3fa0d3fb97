"""Importers: pairs (JSONL/Parquet), OpenAI-style messages, Anthropic-HH transcripts, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data import DataError, read_table
from pipelines.data.importers import (
    import_hh,
    import_messages,
    import_pairs,
    main,
    normalize_rating,
    parse_hh_transcript,
)


def assert_located(error: DataError, path: Path, where: str, field: str) -> None:
    """The message starts with the file and line (then the row's id, if it got one) and names the field."""
    message = str(error)
    assert message.startswith(f"{path}: {where}"), message
    assert f"field '{field}': expected" in message, message


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


PAIRS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
    {"id": "x1",
     "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
     "chosen": "Paris", "rejected": "Lyon", "rating": "Significantly Better", "source": "web"},
    {"prompt": "How do I pick a lock?", "chosen": "I can't help with that.", "rejected": "Use a tension wrench.",
     "rating": "slightly-better", "chosen_safe": True, "rejected_safe": False, "kind": "safety"},
    {"prompt": "Make a weapon", "chosen": "Sure, here is how.", "rejected": "I won't help.",
     "chosen_safe": False, "rejected_safe": True},
    {"prompt": "Hi", "chosen": "Hello!", "rejected": "hey", "rating": "negligibly better/unsure",
     "safety_label": "both_safe"},
]


def test_import_pairs_jsonl(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    result = import_pairs(src, out=tmp_path / "out" / "prefs.parquet")
    rows = result.rows
    assert [r["id"] for r in rows] == ["pairs-0", "x1", "pairs-2", "pairs-4"]
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert rows[0]["rating"] == "negligibly_better"  # documented default when a pair has no rating
    assert [r["rating"] for r in rows[1:]] == ["significantly_better", "slightly_better", "negligibly_better"]
    assert [r["safety_label"] for r in rows] == [None, None, "chosen_safe_rejected_unsafe", "both_safe"]
    assert (rows[2]["kind"], rows[2]["is_safety"]) == ("safety", True)
    assert (rows[0]["kind"], rows[0]["is_safety"]) == ("helpfulness", False)
    assert json.loads(rows[1]["meta"]) == {"source_file": "pairs.jsonl", "source_index": 1, "extra": {"source": "web"}}
    # Paper section 3.2.1: chosen unsafe + rejected safe is dropped, and counted.
    assert result.report.dropped == {"chosen_unsafe_rejected_safe": 1}
    assert (result.report.total, result.report.kept, result.report.skipped) == (5, 4, {})
    assert read_table(result.out, "preferences") == rows


def test_import_pairs_parquet(tmp_path: Path) -> None:
    src = tmp_path / "pairs.parquet"
    records = [{"prompt": "a?", "chosen": "b", "rejected": "c", "rating": "better"},
               {"prompt": "d?", "chosen": "e", "rejected": "f", "rating": None}]
    pq.write_table(pa.Table.from_pylist(records), src)
    rows = import_pairs(src, kind="safety", task="qa").rows
    assert [(r["id"], r["rating"], r["kind"], r["is_safety"], r["task"]) for r in rows] == [
        ("pairs-0", "better", "safety", True, "qa"), ("pairs-1", "negligibly_better", "safety", True, "qa")]


def test_import_pairs_parquet_missing_column_always_raises(tmp_path: Path) -> None:
    src = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"prompt": ["a"], "chosen": ["b"]}), src)
    with pytest.raises(DataError) as err:
        import_pairs(src, on_bad_row="skip")
    assert str(err.value).startswith(f"{src}: field 'rejected': missing column(s) ['rejected']")


def test_rating_aliases_and_map() -> None:
    assert normalize_rating(" Slightly Better ") == "slightly_better"
    assert normalize_rating("unsure") == "negligibly_better"
    assert normalize_rating(0, {0: "significantly_better"}) == "significantly_better"
    for bad in (0, 2.5, True, "much better"):
        with pytest.raises(ValueError, match="field 'rating': expected one of"):
            normalize_rating(bad)
    with pytest.raises(ValueError, match=r"rating_map\[3\] = 'best' is not one of"):
        normalize_rating(3, {3: "best"})


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        ({"prompt": "q", "chosen": "a", "rejected": "b", "rating": 3}, "rating", "unknown_rating"),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "rating": "amazing"}, "rating", "unknown_rating"),
        ({"prompt": "q", "chosen": "a"}, "rejected", "missing_field"),
        ({"prompt": "q", "chosen": "a", "rejected": "a"}, "rejected", "chosen_equals_rejected"),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, "prompt[0].content", "empty_content"),
        ({"prompt": [{"role": "bot", "content": "q"}], "chosen": "a", "rejected": "b"},
         "prompt[0].role", "unknown_role"),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "chosen_safe": True}, "rejected_safe", "missing_field"),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "chosen_safe": 1, "rejected_safe": 0},
         "chosen_safe", "wrong_type"),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "safety_label": "unsafe"},
         "safety_label", "unknown_safety_label"),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "safety_label": "both_safe", "chosen_safe": True,
          "rejected_safe": False}, "safety_label", "unknown_safety_label"),
        ({"id": 5, "prompt": "q", "chosen": "a", "rejected": "b"}, "id", "wrong_type"),
    ],
)
def test_import_pairs_bad_record_names_line_and_field(tmp_path: Path, record: dict, field: str, reason: str) -> None:
    src = write_jsonl(tmp_path / "pairs.jsonl", [PAIRS[0], record])
    with pytest.raises(DataError) as err:
        import_pairs(src)
    assert_located(err.value, src, "line 2", field)
    assert err.value.reason == reason and err.value.line == 2


def test_import_pairs_skip_mode_counts(tmp_path: Path) -> None:
    src = tmp_path / "pairs.jsonl"
    lines = [json.dumps(PAIRS[0]), "", json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "rating": "huge"}),
             json.dumps([1, 2]), json.dumps(PAIRS[3]), json.dumps(PAIRS[1]), json.dumps(PAIRS[1])]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = import_pairs(src, on_bad_row="skip")
    assert [r["id"] for r in result.rows] == ["pairs-0", "x1"]
    assert result.report.skipped == {"unknown_rating": 1, "wrong_type": 1, "duplicate_id": 1}
    assert (result.report.total, result.report.kept) == (6, 2)  # the blank line is no record
    assert "line 7 (id='x1'), field 'id': expected a unique key, found a duplicate of line 6" in (
        result.report.first_error["duplicate_id"])
    assert result.report.dropped == {"chosen_unsafe_rejected_safe": 1}
    assert "line 3 (id='pairs-1'), field 'rating'" in result.report.first_error["unknown_rating"]
    assert "line 4 (id='pairs-2'), field '*': expected a JSON object per record, found list" in (
        result.report.first_error["wrong_type"])


def test_non_utf8_input_names_line_and_byte_offset(tmp_path: Path) -> None:
    src = tmp_path / "pairs.jsonl"
    first = (json.dumps(PAIRS[0]) + "\n").encode()
    src.write_bytes(first + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(DataError) as err:
        import_pairs(src, on_bad_row="skip")
    offset = len(first) + len(b'{"prompt": "caf')
    assert str(err.value) == (f"{src}: line 2: expected UTF-8 text, found byte 0xe9 at byte offset {offset} "
                              f"of the file (column 16)")


def test_invalid_json_and_unknown_format(tmp_path: Path) -> None:
    src = tmp_path / "pairs.jsonl"
    src.write_text('{"prompt": "q",\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{src}: line 1: expected one JSON object per line, found invalid JSON"):
        import_pairs(src)
    other = tmp_path / "pairs.csv"
    other.write_text("prompt,chosen,rejected\n", encoding="utf-8")
    with pytest.raises(DataError, match="expected a .jsonl or .parquet file, found suffix '.csv'"):
        import_pairs(other)
    with pytest.raises(DataError, match="no such file"):
        import_pairs(tmp_path / "missing.jsonl")


def test_import_messages(tmp_path: Path) -> None:
    records = [
        {"messages": [{"role": "user", "content": "Sort 3 1 2"}, {"role": "assistant", "content": "1 2 3"}]},
        {"id": "m1", "source": "sharegpt", "lang": "en", "messages": [
            {"role": "system", "content": "Speak like a pirate."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Ahoy"}]},
    ]
    src = write_jsonl(tmp_path / "chat.jsonl", records)
    result = import_messages(src, out=tmp_path / "dialogues.parquet")
    assert [(r["id"], r["source"]) for r in result.rows] == [("chat-0", "chat"), ("m1", "sharegpt")]
    assert result.rows[1]["messages"] == records[1]["messages"]
    assert json.loads(result.rows[1]["meta"])["extra"] == {"lang": "en"}
    assert read_table(result.out, "dialogues") == result.rows


@pytest.mark.parametrize(
    ("messages", "field", "reason"),
    [
        ([{"role": "user", "content": "q"}, {"role": "tool", "content": "x"}], "messages[1].role", "unknown_role"),
        ([{"role": "user", "content": "q"}], "messages[0].role", "turn_order"),
        ([{"role": "assistant", "content": "a"}], "messages[0].role", "turn_order"),
        ([{"role": "user", "content": "q", "name": "bob"}, {"role": "assistant", "content": "a"}],
         "messages[0]", "wrong_type"),
        ("hello", "messages", "wrong_type"),
    ],
)
def test_import_messages_errors(tmp_path: Path, messages, field: str, reason: str) -> None:
    src = write_jsonl(tmp_path / "chat.jsonl", [{"messages": messages}])
    with pytest.raises(DataError) as err:
        import_messages(src)
    assert_located(err.value, src, "line 1 (id='chat-0')", field)
    assert err.value.reason == reason


def test_dialogue_longer_than_context_on_import(tmp_path: Path) -> None:
    long = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a " * 100}]}
    src = write_jsonl(tmp_path / "chat.jsonl", [long])
    count = lambda messages: sum(len(m["content"].split()) for m in messages)  # noqa: E731
    with pytest.raises(DataError) as err:
        import_messages(src, max_tokens=64, count_tokens=count)
    assert str(err.value) == (
        f"{src}: line 1 (id='chat-0'), field 'messages': expected at most 64 tokens (the model's context), found 101")


def test_parse_hh_transcript() -> None:
    text = "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant:  6 "
    assert parse_hh_transcript(text) == [
        {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}]
    assert parse_hh_transcript("Human: hi\n\nAssistant: yo") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    with pytest.raises(ValueError, match="expected the transcript to start with 'Human:'"):
        parse_hh_transcript("Hello\n\nHuman: hi")


H, A = "\n\nHuman: ", "\n\nAssistant: "
HH = [
    {"chosen": "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour, water, yeast; knead; bake.",
     "rejected": "\n\nHuman: How do I bake bread?\n\nAssistant: Buy it."},
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Steal a car?\n\nAssistant: I can't help with that.",
     "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Steal a car?\n\nAssistant: Hotwire it."},
]


def test_import_hh(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "harmless.jsonl", HH)
    result = import_hh(src, kind="safety", out=tmp_path / "hh.parquet")
    first, second = result.rows
    assert first["prompt"] == [{"role": "user", "content": "How do I bake bread?"}]
    assert (first["chosen"], first["rejected"]) == ("Mix flour, water, yeast; knead; bake.", "Buy it.")
    assert [m["role"] for m in second["prompt"]] == ["user", "assistant", "user"]
    assert (second["chosen"], second["rejected"]) == ("I can't help with that.", "Hotwire it.")
    assert {(r["rating"], r["kind"], r["is_safety"], r["task"], r["safety_label"]) for r in result.rows} == {
        ("negligibly_better", "safety", True, "hh", None)}
    assert read_table(result.out, "preferences") == result.rows


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        ({"chosen": f"{H}A?{A}x", "rejected": f"{H}B?{A}y"}, "rejected", "prompt_mismatch"),
        ({"chosen": f"{H}A?{A}x", "rejected": f"{H}A?{A}y{H}C?{A}z"}, "rejected", "prompt_mismatch"),
        ({"chosen": f"{H}A?{A}x", "rejected": f"{H}A?{A}x"}, "rejected", "chosen_equals_rejected"),
        ({"chosen": f"{H}A?\n\nAssistant:", "rejected": f"{H}A?{A}y"}, "chosen", "empty_content"),
        ({"chosen": f"{H}A?", "rejected": f"{H}A?{A}y"}, "chosen", "turn_order"),
        ({"chosen": f"preamble{H}A?{A}x", "rejected": f"{H}A?{A}y"}, "chosen", "turn_order"),
    ],
)
def test_import_hh_errors(tmp_path: Path, record: dict, field: str, reason: str) -> None:
    src = write_jsonl(tmp_path / "hh.jsonl", [HH[0], record])
    with pytest.raises(DataError) as err:
        import_hh(src)
    assert_located(err.value, src, "line 2", field)
    assert err.value.reason == reason
    result = import_hh(src, on_bad_row="skip")
    assert len(result.rows) == 1 and result.report.skipped == {reason: 1}


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = write_jsonl(tmp_path / "hh.jsonl", HH)
    out = tmp_path / "hh.parquet"
    assert main(["hh", str(src), str(out), "--kind", "safety"]) == 0
    assert [r["kind"] for r in read_table(out, "preferences")] == ["safety", "safety"]
    assert f"kept 2 of 2 rows -> {out}" in capsys.readouterr().out
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
    assert main(["messages", str(bad), str(tmp_path / "d.parquet")]) == 1
    assert f"error: {bad}: line 1 (id='bad-0'), field 'messages[0].role'" in capsys.readouterr().err
    assert not (tmp_path / "d.parquet").exists()
