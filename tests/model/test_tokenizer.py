"""Tests for model/tokenizer.py: Llama 2 SentencePiece settings, byte fallback, HF interop."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pytest

from model.tokenizer import MODEL_FILENAME, N_RESERVED_PIECES, Tokenizer, train_tokenizer

VOCAB_SIZE = 1024
# Characters the corpus never contains: they must go through byte fallback.
UNSEEN_TEXT = "日本語 ✓ 🦙 Ωmega — «quote»"


def make_corpus(n_lines: int = 600, seed: int = 0) -> list[str]:
    """Varied short lines: words, numbers, punctuation, chat tags, 'é' and '€'."""
    rng = random.Random(seed)
    syllables = "ka lo mi ne ru sa te vo zi pa qu br st ch é an".split()
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(500)]

    def phrase(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    lines = []
    for i in range(n_lines):
        a, b = rng.randint(0, 9999), rng.randint(0, 999)
        kind = i % 5
        if kind == 0:
            lines.append(f"[INST] What is {a} plus {b}? [/INST] {a + b} ")
        elif kind == 1:
            lines.append(f"{phrase(rng.randint(3, 10)).capitalize()}, {phrase(2)}; costs {a}.{b:02d} €!")
        elif kind == 2:
            lines.append(f"<<SYS>>\nAlways answer in upper case.\n<</SYS>>\n\n{phrase(5)}?")
        elif kind == 3:
            lines.append(f"Café {phrase(4)} (id {a}-{b}) \"{phrase(2)}\" -- {phrase(3).upper()}")
        else:
            lines.append(f"  {phrase(6)}\t{a * 7}  ")
    return lines


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return make_corpus()


@pytest.fixture(scope="module")
def tok(corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return train_tokenizer(corpus, tmp_path_factory.mktemp("tok"), vocab_size=VOCAB_SIZE)


def test_llama2_id_layout(tok: Tokenizer) -> None:
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, -1)
    assert tok.vocab_size == VOCAB_SIZE
    assert [tok.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    # byte_fallback reserves ids 3..258 for the 256 bytes, in order.
    assert [tok.id_to_piece(3 + b) for b in (0, 0x41, 0xFF)] == ["<0x00>", "<0x41>", "<0xFF>"]


def test_encode_frames_with_bos_eos(tok: Tokenizer) -> None:
    body = tok.encode("ka lo 12", bos=False, eos=False)
    assert body and tok.bos_id not in body and tok.eos_id not in body
    assert tok.encode("ka lo 12", bos=True, eos=False) == [1] + body
    assert tok.encode("ka lo 12", bos=True, eos=True) == [1] + body + [2]
    assert tok.encode("", bos=True, eos=True) == [1, 2]
    # The dummy prefix makes a text-initial word look like a mid-sentence word.
    assert tok.id_to_piece(body[0]).startswith("▁")


def test_encode_batch_equals_encode(tok: Tokenizer, corpus: list[str]) -> None:
    texts = corpus[:20] + [UNSEEN_TEXT]
    assert tok.encode_batch(texts, bos=True, eos=True) == [tok.encode(t, bos=True, eos=True) for t in texts]


def test_digits_are_split(tok: Tokenizer) -> None:
    ids = tok.encode("pay 1234567 or 90210 now 3.14", bos=False, eos=False)
    digit_pieces = [p for p in (tok.id_to_piece(i) for i in ids) if any(c.isdigit() for c in p)]
    assert "".join(digit_pieces).replace("▁", "") == "1234567902103" + "14"
    assert all(len(p.replace("▁", "")) == 1 for p in digit_pieces), digit_pieces


def test_byte_fallback_round_trip(tok: Tokenizer) -> None:
    ids = tok.encode(UNSEEN_TEXT, bos=False, eos=False)
    assert tok.unk_id not in ids
    byte_ids = [i for i in ids if 3 <= i < N_RESERVED_PIECES]
    assert len(byte_ids) >= len("日本語✓🦙Ω—«»".encode("utf-8"))
    assert tok.decode(ids) == UNSEEN_TEXT


def test_no_normalization(tok: Tokenizer, corpus: list[str]) -> None:
    # identity normalisation and remove_extra_whitespaces=false: text comes back byte for byte,
    # full-width letters are not NFKC-folded, runs of spaces and tabs survive.
    texts = ["ＡＢＣ ﬁ x", "a  b\t\tc\n\nd  ", "  lead and trail  ", "€5 café"] + corpus[:50]
    for text in texts:
        assert tok.decode(tok.encode(text, bos=True, eos=True)) == text


def test_decode_rejects_bad_ids(tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match=r"ids \[1024\] are outside \[0, 1024\)"):
        tok.decode([5, 1024])
    with pytest.raises(ValueError, match="outside"):
        tok.decode([-1])


def test_training_is_deterministic_and_atomic(corpus: list[str], tok: Tokenizer, tmp_path: Path) -> None:
    again = train_tokenizer(iter(corpus), tmp_path, vocab_size=VOCAB_SIZE)
    assert again.model_path.read_bytes() == tok.model_path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_FILENAME]  # no temporary file left


def test_load_from_directory_or_file(tok: Tokenizer) -> None:
    by_dir = Tokenizer(tok.model_path.parent)
    assert by_dir.model_path == tok.model_path
    assert by_dir.encode(UNSEEN_TEXT, bos=True, eos=False) == tok.encode(UNSEEN_TEXT, bos=True, eos=False)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / MODEL_FILENAME)):
        Tokenizer(tmp_path)
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"this is not a protobuf \x00\xff")
    with pytest.raises(ValueError, match="garbage.model is not a SentencePiece model"):
        Tokenizer(garbage)


def test_pickle_carries_the_model(tok: Tokenizer, tmp_path: Path) -> None:
    copy_dir = tmp_path / "copy"
    moved = Tokenizer(tok.save(copy_dir))
    blob = pickle.dumps(moved)
    (copy_dir / MODEL_FILENAME).unlink()  # an actor on another node has no such file
    restored = pickle.loads(blob)
    assert restored.encode(UNSEEN_TEXT, bos=True, eos=True) == tok.encode(UNSEEN_TEXT, bos=True, eos=True)
    assert restored.vocab_size == VOCAB_SIZE


@pytest.mark.parametrize(
    ("texts", "kwargs", "error", "match"),
    [
        (["a b c"] * 10, {"vocab_size": N_RESERVED_PIECES}, ValueError, "must be an int above 259"),
        (["a b c"] * 10, {"vocab_size": 5000}, ValueError, "Vocabulary size too high"),
        (["ok", "fine", 7], {"vocab_size": 300}, TypeError, r"texts\[2\] is int, expected str"),
        ([], {"vocab_size": 300}, ValueError, "texts is empty"),
        (["x" * 50, "y" * 200], {"vocab_size": 300, "max_sentence_length": 100}, ValueError,
         r"texts\[1\] is 200 bytes long, more than max_sentence_length=100"),
        (["a b c"], {"vocab_size": 300, "bos_id": 5}, ValueError, r"\['bos_id'\].*cannot be overridden"),
        (["a b c"], {"vocab_size": 300, "no_such_option": 1}, ValueError, "no_such_option"),
    ],
)
def test_train_errors(texts: list, kwargs: dict, error: type, match: str, tmp_path: Path) -> None:
    with pytest.raises(error, match=match):
        train_tokenizer(texts, tmp_path, **kwargs)
    assert not (tmp_path / MODEL_FILENAME).exists()


def test_save_loads_in_transformers_with_equal_ids(tok: Tokenizer, corpus: list[str], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    out = tok.save(tmp_path / "hf")
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert (config["bos_token"], config["eos_token"], config["unk_token"]) == ("<s>", "</s>", "<unk>")
    assert (out / MODEL_FILENAME).read_bytes() == tok.model_path.read_bytes()
    hf = AutoTokenizer.from_pretrained(out)
    assert (hf.bos_token_id, hf.eos_token_id, hf.unk_token_id, hf.pad_token_id) == (1, 2, 0, None)
    assert len(hf) == VOCAB_SIZE
    # transformers' Metaspace drops one "▁" when a text starts with whitespace (a documented HF
    # difference, see Tokenizer.save); the chat format never produces such a segment.
    texts = [t for t in corpus + [UNSEEN_TEXT, "12345 €", "x  y\n\nz  "] if not t[:1].isspace()]
    for text in texts:
        ids = tok.encode(text, bos=True, eos=False)
        assert hf(text)["input_ids"] == ids, text
        assert hf.decode(ids, skip_special_tokens=True) == text
