"""A tiny Llama-Guard-format guard that gives BOTH verdicts, for benchmarks and tests (TESTING ONLY).

The responder of :mod:`tars_verl.testing.served_models` answers ``unsafe`` to every guard conversation, so a
benchmark over it could not tell a scorer that reads the verdict from one that always says ``unsafe``. This one is
trained (:func:`~tars_verl.testing.served_models.train_responder` with :func:`examples`) to answer a [user,
assistant] conversation, rendered with the model's chat template, by what the assistant turn does:

- a refusal (it ends with one of :data:`REFUSALS`): ``\\n\\nsafe``;
- a compliance (it ends with one of :data:`COMPLIANCES`): ``\\n\\nunsafe\\nS1``.

The user turn and the rest of the answer are random filler, so the verdict depends on the answer's end alone.

    python -m tars_verl.testing.verdict_guard /tmp/tars_verdict_guard      # builds <dir>/guard once
"""

from __future__ import annotations

import os
import random
import sys
import time

from .served_models import _chat, _filler, train_responder
from .tiny_models import build_folder_once

SAFE_REPLY = "\n\nsafe"
UNSAFE_REPLY = "\n\nunsafe\nS1"
# The closing decides the class, by a word found in every closing of one class and nowhere else (" decline" /
# " certainly", neither in the filler's word list): a 2-layer model learns a word's presence quickly, while closings
# made of the filler's own words ("Here are the steps") it learned only to about 95% in 4000 steps.
REFUSALS = ("Sorry, I decline", "I must decline", "Politely, I decline")
COMPLIANCES = ("Yes, certainly", "Done, certainly", "Sure, certainly")


def answer(refuse: bool, rng: random.Random, body: str = "") -> str:
    """An answer of one class: ``body`` (any text), then a closing of :data:`REFUSALS` (``refuse``) or of
    :data:`COMPLIANCES`."""
    closing = rng.choice(REFUSALS if refuse else COMPLIANCES)
    return f"{body} {closing}" if body else closing


def expected_verdict(text: str) -> str:
    """The verdict the trained guard gives an answer built by :func:`answer`."""
    return "safe" if text.endswith(REFUSALS) else "unsafe"


def conversation(refuse: bool, rng: random.Random, tokenizer) -> tuple[str, str]:
    """A (user prompt, answer) pair as the guard was trained on: random filler, the answer of class ``refuse``."""
    return _filler(rng, tokenizer), answer(refuse, rng, _filler(rng, tokenizer))


def examples(tokenizer, rng: random.Random) -> list[tuple[str, list[int], str]]:
    """Two guard conversations per call, one of each class (``examples_fn`` of ``train_responder``)."""
    out = []
    for refuse in (True, False):
        prompt, text = conversation(refuse, rng, tokenizer)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]
        out.append(("safe" if refuse else "unsafe", _chat(tokenizer, messages), SAFE_REPLY if refuse else UNSAFE_REPLY))
    return out


def ensure_verdict_guard(root: str, log=print) -> str:
    """Train the guard once into ``root/guard`` (atomically: a folder is whole or absent); returns ``root/guard``."""

    def build(tmp: str) -> None:
        t0 = time.time()
        steps = train_responder(
            os.path.join(tmp, "guard"), log=log, examples_fn=examples, max_steps=3000, patience=200, lr=3e-3
        )
        log(f"verdict guard trained in {steps} steps, {time.time() - t0:.1f} s")

    return os.path.join(build_folder_once(root, build, ".tars_verdict_guard_"), "guard")


if __name__ == "__main__":
    print(ensure_verdict_guard(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tars_verdict_guard"))
