"""Split a policy response into reasoning and answer, and score its format.

TARS responses look like ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``. The answer is what
follows ``</think>``; when ``</think>`` is missing the whole response is the answer (the paper's
rule, so an unformatted response is still judged on everything it says).

Two prompt templates are in use, chosen by ``think_prefilled``:

- ``think_prefilled=False`` (default; the SFT warm start and the paper's RL data): the model writes
  ``<think>`` itself, so a well-formed response has exactly one ``<think>`` followed by exactly one
  ``</think>``.
- ``think_prefilled=True``: the prompt already ends with ``<think>`` (e.g. ``data_prep`` with
  ``--prefill-think``, or a chat template that opens the reasoning block), so the response holds only
  the closing tag: exactly one ``</think>`` and no ``<think>``.

Example:
    >>> parts = split_reasoning("<think>\\nIt asks for malware.\\n</think>\\n\\nI can't help with that.")
    >>> parts.reasoning, parts.answer, parts.format_ok
    ('It asks for malware.', "I can't help with that.", True)
    >>> split_reasoning("Sure, here is how").format_ok
    False
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class ResponseParts:
    reasoning: str
    answer: str
    format_ok: bool
    has_close_tag: bool


def is_well_formatted(response: str, think_prefilled: bool = False) -> bool:
    """Exactly one ``<think>`` then exactly one ``</think>`` (only the ``</think>`` when pre-filled)."""
    n_open = response.count(THINK_OPEN)
    n_close = response.count(THINK_CLOSE)
    if think_prefilled:
        return n_open == 0 and n_close == 1
    return n_open == 1 and n_close == 1 and response.index(THINK_OPEN) < response.index(THINK_CLOSE)


def split_reasoning(response: str, think_prefilled: bool = False) -> ResponseParts:
    """Split at the last ``</think>``: what the user sees is the text after the final close tag."""
    format_ok = is_well_formatted(response, think_prefilled)
    head, sep, tail = response.rpartition(THINK_CLOSE)
    if not sep:
        return ResponseParts(reasoning="", answer=response.strip(), format_ok=format_ok, has_close_tag=False)
    reasoning = head.replace(THINK_OPEN, "", 1) if head.lstrip().startswith(THINK_OPEN) else head
    return ResponseParts(reasoning=reasoning.strip(), answer=tail.strip(), format_ok=format_ok, has_close_tag=True)


def format_reward(response: str, think_prefilled: bool = False) -> float:
    """The paper's r_f: 1.0 when well formatted, else 0.0."""
    return 1.0 if is_well_formatted(response, think_prefilled) else 0.0
