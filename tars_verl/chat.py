"""Chat messages read from a data row, checked once for every reader (the reward manager, the evaluation, the
release import, the data checks of a launch).

A prompt is a list of ``{"role": str, "content": ...}`` messages. ``content`` is text, or the OpenAI content-parts
form (a list of ``{"type": "text", "text": ...}`` parts), which is joined into text: a judge never sees the Python
repr of a list. A part that is not text (an image), a message without a role, a dict or a string where a list
belongs, and a null are errors naming the row (``where``), never a traceback without it or a guessed prompt. A
prompt without a user turn (a system prompt alone) is an error too: the judges would see an empty request.

>>> chat_messages([{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}])
[{'role': 'user', 'content': 'Hi\\nthere'}]
>>> last_user_text([{"role": "system", "content": "Be brief."}], "train.parquet row 3")
Traceback (most recent call last):
...
tars_verl.chat.ChatFormatError: train.parquet row 3: the prompt has no user turn (roles: ['system'])
"""

from __future__ import annotations

from typing import Any


class ChatFormatError(ValueError):
    """A prompt is not chat messages of the expected shape; the message names the file and row."""


def _describe(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    return f"{type(value).__name__} {repr(value)[:80]}"


def message_text(content: Any, where: str = "message") -> str:
    """A message's content as text: a string as it is, content parts joined with newlines (text parts only)."""
    if isinstance(content, str):
        return content
    if hasattr(content, "tolist") and not isinstance(content, (dict, str)):
        content = content.tolist()  # a parquet list column comes back as a numpy array
    if isinstance(content, (list, tuple)):
        texts = []
        for i, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else None
                raise ChatFormatError(
                    f"{where}: content part {i} is {_describe(part)}"
                    + (f" (type {kind!r}: only text parts can be judged)" if kind else ", not a text part")
                )
        return "\n".join(texts)
    raise ChatFormatError(f"{where}: message content is {_describe(content)}, not text or a list of text parts")


def chat_messages(value: Any, where: str = "prompt", allow_text: bool = False) -> list[dict[str, str]]:
    """``value`` (a list, or a numpy array read from parquet, of messages) as ``[{"role", "content"}]`` with text
    content. ``allow_text``: a plain string is one user turn (files whose prompt column is text)."""
    if isinstance(value, str):
        if allow_text:
            return [{"role": "user", "content": value}]
        raise ChatFormatError(f"{where}: the prompt is text {value[:80]!r}, not chat messages [{{role, content}}]")
    if hasattr(value, "tolist") and not isinstance(value, dict):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise ChatFormatError(
            f"{where}: the prompt must be a non-empty list of chat messages [{{role, content}}], got {_describe(value)}"
        )
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise ChatFormatError(f"{where}: message {i} is {_describe(m)}, not an object with role and content")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise ChatFormatError(f"{where}: message {i} has no role (got {_describe(role)})")
        out.append({"role": role, "content": message_text(m.get("content"), f"{where}: message {i} ({role})")})
    return out


def last_user_text(messages: list[dict[str, str]], where: str = "prompt") -> str:
    """The text of the last user turn; a prompt without one is a :class:`ChatFormatError` naming ``where``."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return m["content"]
    raise ChatFormatError(f"{where}: the prompt has no user turn (roles: {[m.get('role') for m in messages]})")
