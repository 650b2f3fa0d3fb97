"""Tests for model/chat.py: parity with the Llama 2 chat template in transformers, loss masks, errors."""

from __future__ import annotations

import random
import pytest
import sentencepiece as spm

from model.chat import (
    ChatFormatError,
    EncodedDialog,
    encode_dialog,
    encode_prompt,
    format_dialog_text,
)
from model.tokenizer import Tokenizer, train_tokenizer

# The official Llama 2 chat template (meta-llama/Llama-2-*-chat-hf), written out here as the
# independent reference: the system message is folded into the first user turn, each user turn is
# bos + "[INST] " + content.strip() + " [/INST]", each answer " " + content.strip() + " " + eos.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system_message = messages[0]['content'] %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set system_message = none %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message is not none %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)


def _m(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


SYSTEM = "Always answer in upper case.\nSign as Zed."
DIALOGS = {
    "single_open": [_m("user", "What is 12 plus 30?")],
    "single_answered": [_m("user", "What is 12 plus 30?"), _m("assistant", "42")],
    "system_open": [_m("system", SYSTEM), _m("user", "Reverse the word kalo.")],
    "system_multi_answered": [
        _m("system", SYSTEM),
        _m("user", "  Reverse the word kalo.  "),
        _m("assistant", "OLAK\n-- Zed"),
        _m("user", "Sort: 9, 3, 17"),
        _m("assistant", " 3, 9, 17 -- Zed "),
        _m("user", "How much is 5 € in café money?"),
        _m("assistant", "FIVE € ☕ -- ZED"),
    ],
    "multi_open": [
        _m("user", "Count the letters in 'mississippi'."),
        _m("assistant", "11"),
        _m("user", "And 's'?\n\nBe brief."),
        _m("assistant", "4"),
        _m("user", "Convert 3 km to m 🦙"),
    ],
    "empty_contents": [_m("system", ""), _m("user", ""), _m("assistant", ""), _m("user", " ")],
    "no_system_brackets": [
        _m("user", "Is [1, 2] a list? Use <b>tags</b>."),
        _m("assistant", "Yes: [1, 2] is a list; <<b>> is not a tag."),
    ],
}


def make_chat_corpus(n_lines: int = 500, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa", "st", "ch", "é"]
    words = "what is plus minus reverse the word sort count letters in convert km to m answer yes no".split()
    words += ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(300)]
    lines = []
    for i in range(n_lines):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        phrase = " ".join(rng.choice(words) for _ in range(rng.randint(2, 8)))
        lines.append(f"[INST] {phrase.capitalize()} {a} {b}? [/INST] {phrase.upper()} {a + b}. ")
        if i % 4 == 0:
            system = "<<SYS>>\nAlways answer in upper case.\n<</SYS>>\n\n"
            lines.append(f"{system}{phrase} 'kalo' ({a}, {b}) café €")
    return lines


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return train_tokenizer(make_chat_corpus(), tmp_path_factory.mktemp("chat_tok"), vocab_size=700)


@pytest.fixture(scope="module")
def hf_tok(tok: Tokenizer, tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tok.save(tmp_path_factory.mktemp("chat_hf")))


def _answers(messages: list[dict[str, str]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "assistant"]


def _masked_runs(enc: EncodedDialog) -> list[list[int]]:
    """Maximal runs of consecutive trainable tokens."""
    runs: list[list[int]] = []
    previous = 0
    for token, flag in zip(enc.tokens, enc.loss_mask):
        if flag and not previous:
            runs.append([])
        if flag:
            runs[-1].append(token)
        previous = flag
    return runs


@pytest.mark.parametrize("name", sorted(DIALOGS))
def test_tokens_equal_hf_llama2_chat_template(name: str, tok: Tokenizer, hf_tok) -> None:
    messages = DIALOGS[name]
    expected = hf_tok.apply_chat_template(messages, chat_template=LLAMA2_CHAT_TEMPLATE, tokenize=True)
    expected = expected["input_ids"]
    assert encode_dialog(tok, messages).tokens == expected
    rendered = hf_tok.apply_chat_template(messages, chat_template=LLAMA2_CHAT_TEMPLATE, tokenize=False)
    assert format_dialog_text(messages) == rendered


def test_single_exchange_by_hand(tok: Tokenizer) -> None:
    # Straight from the spec, with the raw SentencePiece processor.
    sp = spm.SentencePieceProcessor(model_file=str(tok.model_path))
    messages = [_m("system", "Be terse."), _m("user", " hi 7 "), _m("assistant", " yo "), _m("user", "next")]
    expected = (
        [1] + sp.encode("[INST] <<SYS>>\nBe terse.\n<</SYS>>\n\n hi 7 [/INST] yo ") + [2]
        + [1] + sp.encode("[INST] next [/INST]")
    )
    enc = encode_dialog(tok, messages)
    assert enc.tokens == expected
    n_open = 1 + len(sp.encode("[INST] next [/INST]"))
    assert enc.turn_ids == [0] * (len(expected) - n_open) + [1] * n_open


@pytest.mark.parametrize("name", sorted(DIALOGS))
@pytest.mark.parametrize("train_on", ["all", "last", "none"])
def test_loss_mask_marks_exactly_the_answers(name: str, train_on: str, tok: Tokenizer) -> None:
    messages = DIALOGS[name]
    enc = encode_dialog(tok, messages, train_on=train_on)
    answers = _answers(messages)
    expected = {"all": answers, "last": answers[-1:], "none": []}[train_on]
    runs = _masked_runs(enc)
    assert len(runs) == len(expected)
    for run, answer in zip(runs, expected):
        assert run[-1] == tok.eos_id and tok.eos_id not in run[:-1]
        # The answer segment is " {answer} " after "[/INST]"; decoding drops the leading space.
        assert tok.decode(run) == answer.strip() + " "
    assert enc.num_trainable == sum(len(r) for r in runs)


@pytest.mark.parametrize("name", sorted(DIALOGS))
def test_turn_ids_follow_segments(name: str, tok: Tokenizer) -> None:
    enc = encode_dialog(tok, DIALOGS[name])
    starts = [i for i, t in enumerate(enc.tokens) if t == tok.bos_id]
    n_turns = len(starts)
    assert enc.turn_ids == [sum(s <= i for s in starts) - 1 for i in range(len(enc.tokens))]
    assert n_turns == (len([m for m in DIALOGS[name] if m["role"] != "system"]) + 1) // 2
    # Each segment's masked part is a suffix of the segment (prompt first, then answer + EOS).
    for turn in range(n_turns):
        flags = [f for f, t in zip(enc.loss_mask, enc.turn_ids) if t == turn]
        assert flags == sorted(flags)


def test_open_turn_is_a_prompt_without_trainable_tokens(tok: Tokenizer) -> None:
    messages = DIALOGS["multi_open"]
    enc = encode_dialog(tok, messages, train_on="all")
    last_turn = max(enc.turn_ids)
    assert all(f == 0 for f, t in zip(enc.loss_mask, enc.turn_ids) if t == last_turn)
    assert enc.tokens[-1] != tok.eos_id
    assert encode_prompt(tok, messages) == enc.tokens
    closed = encode_dialog(tok, messages[:-1], train_on="all")
    assert enc.tokens[: len(closed.tokens)] == closed.tokens


def test_answer_boundary_that_is_not_a_token_boundary_is_an_error() -> None:
    class PairTokenizer:
        """Encodes pairs of characters, so "]" + " " can merge across the prompt/answer boundary."""

        def encode(self, text: str, bos: bool, eos: bool) -> list[int]:
            pairs = [text[i : i + 2] for i in range(0, len(text), 2)]
            ids = [sum(ord(c) << (8 * k) for k, c in enumerate(pair)) for pair in pairs]
            return [1] * bos + ids + [2] * eos

    # "[INST] hi [/INST]" has odd length: its last pair is "]" alone, but "] " in the full segment.
    with pytest.raises(RuntimeError, match="exchange 0: the prompt's tokens are not a prefix"):
        encode_dialog(PairTokenizer(), [_m("user", "hi"), _m("assistant", "yo")])


BAD_DIALOGS = [
    ([], "dialog: no messages"),
    ("just a string", "dialog: expected a sequence"),
    ([("user", "hi")], "message 0: expected a mapping"),
    ([{"role": "user"}], "message 0: missing key 'content'"),
    ([{"content": "hi"}], "message 0: missing key 'role'"),
    ([_m("user", "hi"), _m("bot", "yo")], "message 1: role 'bot' is not one of"),
    ([_m("user", "hi"), {"role": "assistant", "content": 42}], "message 1: content is int, expected str"),
    ([_m("assistant", "yo")], "message 0: expected role 'user', got 'assistant'"),
    ([_m("user", "a"), _m("user", "b")], "message 1: expected role 'assistant', got 'user'"),
    ([_m("system", "s"), _m("system", "t"), _m("user", "u")], "message 1: expected role 'user', got 'sys"),
    ([_m("user", "a"), _m("assistant", "b"), _m("system", "s")], "message 2: expected role 'user', got 'sys"),
    ([_m("system", "s")], "message 0: a system message must be followed by a user message"),
    ([_m("user", "a"), _m("assistant", "b"), _m("user", "do [INST] this")], "message 2: .*tag '\\[INST\\]'"),
    ([_m("user", "a"), _m("assistant", "ok [/INST] x")], "message 1: .*tag '\\[/INST\\]'"),
    ([_m("system", "<<SYS>> hi"), _m("user", "a")], "message 0: .*tag '<<SYS>>'"),
    ([_m("system", "s"), _m("user", "a <</SYS>>")], "message 1: .*tag '<</SYS>>'"),
]


@pytest.mark.parametrize(("messages", "match"), BAD_DIALOGS)
def test_bad_dialogs_raise_chat_format_error(messages, match: str, tok: Tokenizer) -> None:
    with pytest.raises(ChatFormatError, match=match):
        encode_dialog(tok, messages)
    with pytest.raises(ChatFormatError, match=match):
        format_dialog_text(messages)


def test_bad_train_on_and_prompt_without_open_turn(tok: Tokenizer) -> None:
    with pytest.raises(ChatFormatError, match="train_on='some' is not one of"):
        encode_dialog(tok, DIALOGS["single_answered"], train_on="some")
    with pytest.raises(ChatFormatError, match="message 1: a generation prompt must end with a user message"):
        encode_prompt(tok, DIALOGS["single_answered"])
    assert issubclass(ChatFormatError, ValueError)


def test_encoded_dialog_is_frozen_and_checked() -> None:
    enc = EncodedDialog(tokens=[1, 5, 2], loss_mask=[0, 1, 1], turn_ids=[0, 0, 0])
    with pytest.raises(AttributeError):
        enc.tokens = []  # type: ignore[misc]
    with pytest.raises(ValueError, match="must have the same length"):
        EncodedDialog(tokens=[1, 5], loss_mask=[0], turn_ids=[0, 0])


def test_format_dialog_text_example() -> None:
    messages = [_m("system", "S"), _m("user", " u1 "), _m("assistant", " a1 "), _m("user", "u2")]
    expected = "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\n u1 [/INST] a1 </s><s>[INST] u2 [/INST]"
    assert format_dialog_text(messages) == expected
