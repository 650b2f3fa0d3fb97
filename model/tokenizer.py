"""SentencePiece BPE tokenizer with Llama 2's settings (paper section 2.2; LLAMA2_SPEC.md section 2).

Llama 2 uses the Llama 1 tokenizer recipe: SentencePiece BPE, numbers split into single digits,
unknown UTF-8 decomposed into bytes (byte fallback), ids unk=0 `<unk>`, bos=1 `<s>`, eos=2 `</s>`,
no pad id, a dummy prefix space and no text normalisation. `train_tokenizer` trains such a model
on a text iterator; `Tokenizer` wraps an existing `tokenizer.model` (ours or Meta's) and can save
it in a layout that `transformers.AutoTokenizer.from_pretrained` loads with identical ids.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

logger = logging.getLogger(__name__)

MODEL_FILENAME = "tokenizer.model"
N_SPECIAL_PIECES = 3  # <unk>, <s>, </s>
N_BYTE_PIECES = 256  # <0x00> .. <0xFF>, reserved by byte_fallback
N_RESERVED_PIECES = N_SPECIAL_PIECES + N_BYTE_PIECES

# The trainer spec stored in Meta's Llama 2 tokenizer.model, minus corpus-size knobs. Shuffling and
# sampling are off and training is single-threaded so that the same texts give the same bytes.
LLAMA2_TRAINER_OPTIONS: dict[str, Any] = {
    "model_type": "bpe",
    "split_digits": True,
    "byte_fallback": True,
    "unk_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "pad_id": -1,
    "unk_piece": "<unk>",
    "bos_piece": "<s>",
    "eos_piece": "</s>",
    "add_dummy_prefix": True,
    "normalization_rule_name": "identity",
    "remove_extra_whitespaces": False,
    "allow_whitespace_only_pieces": True,
    "split_by_whitespace": True,
    "split_by_unicode_script": True,
    "split_by_number": True,
    "max_sentencepiece_length": 16,
    "character_coverage": 0.99995,
    "hard_vocab_limit": True,
    "max_sentence_length": 1 << 16,
    "input_sentence_size": 0,
    "shuffle_input_sentence": False,
    "num_threads": 1,
    "minloglevel": 2,
}

# Options that define the Llama 2 id layout or the data flow; the chat format and the HF export rely
# on them, so they cannot be overridden through **kw.
_FIXED_OPTIONS = frozenset(
    {"model_type", "byte_fallback", "unk_id", "bos_id", "eos_id", "pad_id", "unk_piece", "bos_piece",
     "eos_piece", "split_by_whitespace", "input", "model_prefix", "sentence_iterator", "model_writer",
     "vocab_size"}
)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class _CheckedTexts:
    """Iterator over the training texts that validates each one and remembers the first error.

    SentencePiece turns an exception raised inside its sentence iterator into a RuntimeError
    carrying only the message, so the original exception is kept here and re-raised by the caller.
    """

    def __init__(self, texts: Iterable[str], max_bytes: int) -> None:
        self._texts = iter(texts)
        self._max_bytes = max_bytes
        self.count = 0
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        text = next(self._texts)
        index = self.count
        self.count += 1
        if not isinstance(text, str):
            self.error = TypeError(f"train_tokenizer: texts[{index}] is {type(text).__name__}, expected str")
        elif len(text.encode("utf-8")) > self._max_bytes:
            # SentencePiece would silently skip it; refuse instead.
            self.error = ValueError(
                f"train_tokenizer: texts[{index}] is {len(text.encode('utf-8'))} bytes long, more than "
                f"max_sentence_length={self._max_bytes}; split it or raise max_sentence_length"
            )
        if self.error is not None:
            raise self.error
        return text


def train_tokenizer(
    texts: Iterable[str], output_dir: str | Path, vocab_size: int, **kw: Any
) -> Tokenizer:
    """Train a Llama 2 style SentencePiece BPE model on `texts`; write `output_dir/tokenizer.model`.

    `kw` overrides other SentencePiece trainer options (e.g. `character_coverage=1.0`); the id
    layout and model type are fixed. Deterministic: the same texts give the same model bytes.
    """
    if not isinstance(vocab_size, int) or vocab_size <= N_RESERVED_PIECES:
        raise ValueError(
            f"train_tokenizer: vocab_size={vocab_size!r} must be an int above {N_RESERVED_PIECES} "
            f"({N_SPECIAL_PIECES} special pieces + {N_BYTE_PIECES} byte-fallback pieces), plus room for "
            "every character of the corpus and the learned merges"
        )
    fixed = sorted(_FIXED_OPTIONS & kw.keys())
    if fixed:
        raise ValueError(
            f"train_tokenizer: options {fixed} define Llama 2's tokenizer and cannot be overridden"
        )
    options = {**LLAMA2_TRAINER_OPTIONS, **kw, "vocab_size": vocab_size}
    checked = _CheckedTexts(texts, max_bytes=int(options["max_sentence_length"]))
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=checked, model_writer=writer, **options)
    except RuntimeError as e:
        if checked.error is not None:
            raise checked.error from None
        if checked.count == 0:
            raise ValueError("train_tokenizer: texts is empty") from e
        raise ValueError(
            f"train_tokenizer: SentencePiece training failed (vocab_size={vocab_size}): {e}"
        ) from e
    path = Path(output_dir) / MODEL_FILENAME
    atomic_write_bytes(path, writer.getvalue())
    logger.info("trained a %d-piece BPE tokenizer on %d texts -> %s", vocab_size, checked.count, path)
    return Tokenizer(path)


def _resolve_model_path(model_path: str | Path) -> Path:
    path = Path(model_path)
    if path.is_dir():
        path = path / MODEL_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"Tokenizer: no SentencePiece model at {path}")
    return path


def _processor_from_bytes(proto: bytes, source: str) -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(proto)
    except RuntimeError as e:
        raise ValueError(f"Tokenizer: {source} is not a SentencePiece model ({e})") from e
    if sp.bos_id() < 0 or sp.eos_id() < 0:
        raise ValueError(
            f"Tokenizer: {source} has bos_id={sp.bos_id()}, eos_id={sp.eos_id()}; "
            "the Llama 2 format needs both"
        )
    return sp


class Tokenizer:
    """A SentencePiece model with Meta's `encode(s, bos, eos)` / `decode(ids)` interface."""

    def __init__(self, model_path: str | Path) -> None:
        path = _resolve_model_path(model_path)
        self._model_path = path
        self._sp = _processor_from_bytes(path.read_bytes(), str(path))

    # Ray ships tokenizers to actors on other nodes, where model_path may not exist: pickle the bytes.
    def __getstate__(self) -> dict[str, Any]:
        return {"model_path": str(self._model_path), "proto": self._sp.serialized_model_proto()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._model_path = Path(state["model_path"])
        self._sp = _processor_from_bytes(state["proto"], state["model_path"])

    def __repr__(self) -> str:
        return f"Tokenizer({str(self._model_path)!r}, vocab_size={self.vocab_size})"

    @property
    def model_path(self) -> Path:
        return self._model_path

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    @property
    def pad_id(self) -> int:
        return self._sp.pad_id()

    def encode(self, text: str, bos: bool, eos: bool) -> list[int]:
        """Token ids of `text`, optionally framed by BOS / EOS (Meta's `Tokenizer.encode`)."""
        if not isinstance(text, str):
            raise TypeError(f"Tokenizer.encode: expected str, got {type(text).__name__}")
        ids = self._sp.encode(text)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode_batch(self, texts: Sequence[str], bos: bool, eos: bool) -> list[list[int]]:
        """`encode` over many texts in one SentencePiece call."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"Tokenizer.encode_batch: texts[{i}] is {type(text).__name__}, expected str")
        head, tail = ([self.bos_id] if bos else []), ([self.eos_id] if eos else [])
        return [head + ids + tail for ids in self._sp.encode(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; control tokens (BOS, EOS) decode to nothing. Nothing stops at EOS."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"Tokenizer.decode: ids {bad[:5]} are outside [0, {self.vocab_size})")
        return self._sp.decode(ids)

    def id_to_piece(self, token_id: int) -> str:
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"Tokenizer.id_to_piece: id {token_id} is outside [0, {self.vocab_size})")
        return self._sp.id_to_piece(token_id)

    def save(self, directory: str | Path) -> Path:
        """Write tokenizer.model + HF tokenizer_config.json / special_tokens_map.json into `directory`.

        `"legacy": true` makes transformers prepend the dummy "▁" to every text span, also after
        special tokens, which is exactly Meta's per-segment encoding: the Llama 2 chat template
        rendered as "<s>[INST] ..." then tokenizes to Meta's `chat_completion` ids. (With
        `"legacy": false`, "[INST]" right after "<s>" would lose its "▁".) Known HF difference for
        plain text: a text that *starts* with whitespace loses one leading "▁" in transformers.
        """
        out = Path(directory)
        specials = {
            "bos_token": self.id_to_piece(self.bos_id),
            "eos_token": self.id_to_piece(self.eos_id),
            "unk_token": self.id_to_piece(self.unk_id) if self.unk_id >= 0 else None,
        }
        config = {
            "tokenizer_class": "LlamaTokenizer",
            **specials,
            "pad_token": None,
            "add_bos_token": True,
            "add_eos_token": False,
            "legacy": True,
            "add_prefix_space": True,
            "clean_up_tokenization_spaces": False,
        }
        atomic_write_bytes(out / MODEL_FILENAME, self._sp.serialized_model_proto())
        atomic_write_bytes(out / "tokenizer_config.json", (json.dumps(config, indent=2) + "\n").encode())
        atomic_write_bytes(out / "special_tokens_map.json", (json.dumps(specials, indent=2) + "\n").encode())
        return out
