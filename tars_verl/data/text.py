"""Text helpers that the data builders (``data/``) and the evaluation (``eval/``) share.

- :func:`user_messages`: one user turn as chat messages, with an optional system prompt first
  (:data:`QWEN_DEFAULT_SYSTEM_PROMPT` is what ``--system-prompt qwen`` selects);
- :func:`normalise`: the form of a prompt used to find duplicates and evaluation prompts in training data;
- :func:`parse_kv`: the ``NAME=VALUE`` command-line options (``--source``, ``--pool``, ``--model``, ...);
  :func:`positive_int`: the argparse type of counts and limits.

They lived in ``data/rl_mix.py``; ``eval/`` imported them from there, so they moved here.

>>> user_messages("Hi", system_prompt="Be brief.")
[{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
>>> normalise("  How do I  bake BREAD?! ")
'how do i bake bread'
>>> parse_kv(["wildjailbreak=800", "aegis2=0"], "--pool", int)
{'wildjailbreak': 800, 'aegis2': 0}
"""

from __future__ import annotations

import re
import unicodedata

QWEN_DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def user_messages(text: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """Chat messages for one user turn, with the system prompt first when there is one."""
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": text}
    ]


def normalise(text: str) -> str:
    """For dedup and leakage checks: NFKC, case-folded, whitespace collapsed, outer punctuation stripped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", text).strip().strip(".!?\"' ")


def parse_kv(items: list[str], what: str, cast=str) -> dict:
    """``["a=1", "b=2"]`` -> ``{"a": cast("1"), "b": cast("2")}``; ``what`` (the flag) names a malformed item, an
    empty name or a name given twice (the second would silently replace the first)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{what} expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if not k.strip():
            raise ValueError(f"{what} {item!r}: the NAME before '=' is empty")
        if k in out:
            raise ValueError(f"{what} {k} is given twice ({k}={out[k]!r} and {item!r}); give each NAME once")
        try:
            out[k] = cast(v)
        except ValueError as err:
            raise ValueError(f"{what} {item!r}: {err}") from None
    return out


def positive_int(text: str) -> int:
    """argparse type for counts and limits: an integer >= 1 (``--limit 0`` or ``-2`` is an error, never "all" or
    "all but the last two").

    >>> positive_int("6")
    6
    """
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def count_flags(parser, *dests: str) -> None:
    """Make the flags of ``parser`` that fill ``dests`` take :func:`positive_int`: ``HfArgumentParser`` types a
    dataclass's int fields ``int``, and a count of 0 would select nothing or wait forever."""
    for action in parser._actions:
        if action.dest in dests:
            action.type = positive_int
