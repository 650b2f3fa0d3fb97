"""The Llama 2-Chat dialogue format (Meta's `chat_completion`; LLAMA2_SPEC.md section 2).

A dialogue is `[system?] user assistant user assistant ... [user]`. The system message is folded
into the first user turn as `<<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user}`. Each completed exchange is one
segment `[BOS] + encode("[INST] {user} [/INST] {answer} ") + [EOS]`; a final open user turn is
`[BOS] + encode("[INST] {user} [/INST]")`, the generation prompt. Segments are encoded separately,
so every segment starts with the dummy-prefix "▁[INST]".

For SFT (paper section 3.1) the loss is on answer tokens only: the loss mask marks each answer's
tokens and its EOS. Ghost Attention (section 3.3) trains on the last turn only (`train_on="last"`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
# Meta's generation.py refuses user content containing these tags (prompt-format injection).
SPECIAL_TAGS = (B_INST, E_INST, "<<SYS>>", "<</SYS>>")
ROLES = ("system", "user", "assistant")
TRAIN_ON = ("all", "last", "none")


class ChatFormatError(ValueError):
    """A dialogue that does not fit the Llama 2 chat format; names the offending message."""


class SupportsEncode(Protocol):
    def encode(self, text: str, bos: bool, eos: bool) -> list[int]: ...


@dataclass(frozen=True)
class EncodedDialog:
    """Token ids of a dialogue with per-token training labels.

    tokens:    [T] ids, the concatenated segments.
    loss_mask: [T] 1 on trainable answer tokens (and their EOS), else 0.
    turn_ids:  [T] index of the exchange (segment) each token belongs to, 0-based; the open
               generation prompt, if any, is the last exchange.
    """

    tokens: list[int]
    loss_mask: list[int]
    turn_ids: list[int]

    def __post_init__(self) -> None:
        if not len(self.tokens) == len(self.loss_mask) == len(self.turn_ids):
            raise ValueError(
                f"EncodedDialog: tokens ({len(self.tokens)}), loss_mask ({len(self.loss_mask)}) and "
                f"turn_ids ({len(self.turn_ids)}) must have the same length"
            )

    @property
    def num_trainable(self) -> int:
        return sum(self.loss_mask)


@dataclass(frozen=True)
class Exchange:
    """One segment: a user turn (system already folded in) and its answer, None for the open turn."""

    user: str
    answer: str | None


def _check_message(index: int, message: object) -> tuple[str, str]:
    if not isinstance(message, Mapping):
        raise ChatFormatError(
            f"message {index}: expected a mapping with 'role' and 'content', got {type(message).__name__}"
        )
    for key in ("role", "content"):
        if key not in message:
            raise ChatFormatError(f"message {index}: missing key {key!r} (keys: {sorted(message)})")
    role, content = message["role"], message["content"]
    if role not in ROLES:
        raise ChatFormatError(f"message {index}: role {role!r} is not one of {ROLES}")
    if not isinstance(content, str):
        raise ChatFormatError(f"message {index}: content is {type(content).__name__}, expected str")
    for tag in SPECIAL_TAGS:
        if tag in content:
            raise ChatFormatError(f"message {index}: content contains the reserved chat tag {tag!r}")
    return role, content


def dialog_exchanges(messages: Sequence[Mapping[str, str]]) -> list[Exchange]:
    """Validate a dialogue and group it into exchanges, folding the system message into turn 0."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ChatFormatError(f"dialog: expected a sequence of messages, got {type(messages).__name__}")
    if len(messages) == 0:
        raise ChatFormatError("dialog: no messages")
    checked = [_check_message(i, m) for i, m in enumerate(messages)]
    system = None
    offset = 0
    if checked[0][0] == "system":
        system, offset = checked[0][1], 1
        if len(checked) == 1:
            raise ChatFormatError("message 0: a system message must be followed by a user message")
    for i in range(offset, len(checked)):
        expected = "user" if (i - offset) % 2 == 0 else "assistant"
        if checked[i][0] != expected:
            raise ChatFormatError(
                f"message {i}: expected role {expected!r}, got {checked[i][0]!r} (after an optional "
                "leading system message, messages must alternate user/assistant starting with user)"
            )
    contents = [content for _, content in checked[offset:]]
    if system is not None:
        contents[0] = B_SYS + system + E_SYS + contents[0]
    return [
        Exchange(user=contents[j], answer=contents[j + 1] if j + 1 < len(contents) else None)
        for j in range(0, len(contents), 2)
    ]


def _prompt_text(user: str) -> str:
    return f"{B_INST} {user.strip()} {E_INST}"


def _segment_text(exchange: Exchange) -> str:
    assert exchange.answer is not None
    return f"{_prompt_text(exchange.user)} {exchange.answer.strip()} "


def _encode_exchange(tokenizer: SupportsEncode, exchange: Exchange, index: int) -> tuple[list[int], int]:
    """Ids of one segment and the number of its leading prompt tokens (the rest is the answer)."""
    prompt = tokenizer.encode(_prompt_text(exchange.user), bos=True, eos=False)
    if exchange.answer is None:
        return prompt, len(prompt)
    full = tokenizer.encode(_segment_text(exchange), bos=True, eos=True)
    # The answer starts with "▁" after "]"; a model trained with split_by_whitespace has no piece
    # spanning that boundary, so the prompt's ids are a prefix of the segment's ids. Never guess.
    if full[: len(prompt)] != prompt:
        raise RuntimeError(
            f"exchange {index}: the prompt's tokens are not a prefix of the segment's tokens, so the "
            "answer span is not a token boundary for this tokenizer (trained without split_by_whitespace?)"
        )
    return full, len(prompt)


def encode_dialog(
    tokenizer: SupportsEncode, messages: Sequence[Mapping[str, str]], train_on: str = "all"
) -> EncodedDialog:
    """Encode a dialogue as Meta's `chat_completion` does, with the answer-token loss mask.

    train_on: "all" marks every answer (SFT, RS), "last" only the last answer (GAtt), "none" none.
    A final user message is the open generation prompt and has no trainable token.
    """
    if train_on not in TRAIN_ON:
        raise ChatFormatError(f"train_on={train_on!r} is not one of {TRAIN_ON}")
    exchanges = dialog_exchanges(messages)
    answered = [i for i, ex in enumerate(exchanges) if ex.answer is not None]
    trainable = {"all": set(answered), "last": set(answered[-1:]), "none": set()}[train_on]
    tokens: list[int] = []
    loss_mask: list[int] = []
    turn_ids: list[int] = []
    for i, exchange in enumerate(exchanges):
        ids, n_prompt = _encode_exchange(tokenizer, exchange, i)
        answer_flag = 1 if i in trainable else 0
        tokens += ids
        loss_mask += [0] * n_prompt + [answer_flag] * (len(ids) - n_prompt)
        turn_ids += [i] * len(ids)
    return EncodedDialog(tokens=tokens, loss_mask=loss_mask, turn_ids=turn_ids)


def encode_prompt(tokenizer: SupportsEncode, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Ids of a generation prompt: the dialogue must end with the user turn to be answered."""
    tokens = encode_dialog(tokenizer, messages, train_on="none").tokens  # validates the dialogue
    last_role = messages[-1]["role"]
    if last_role != "user":
        raise ChatFormatError(
            f"message {len(messages) - 1}: a generation prompt must end with a user message, "
            f"got {last_role!r}"
        )
    return tokens


def format_dialog_text(messages: Sequence[Mapping[str, str]], bos: str = "<s>", eos: str = "</s>") -> str:
    """The dialogue as text with BOS/EOS spelled out (for logs, TensorBoard and debugging)."""
    parts = []
    for exchange in dialog_exchanges(messages):
        if exchange.answer is None:
            parts.append(bos + _prompt_text(exchange.user))
        else:
            parts.append(bos + _segment_text(exchange) + eos)
    return "".join(parts)
