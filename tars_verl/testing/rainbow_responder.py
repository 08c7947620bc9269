"""A tiny served model that plays all four Rainbow-Teaming roles with scripted replies (TESTING only).

One causal LM (``tars_verl.testing.served_models.train_responder`` with :func:`examples`), served by one real vLLM
server under the names ``tiny-target``, ``tiny-mutator``, ``tiny-judge`` and ``tiny-guard``, answers the requests of
``tars_verl.data.rainbow`` (the project's own prompts) with fixed replies, so a test knows what each call returns:

- mutator, category step (``generate`` or ``mutate_category``): for category ``alpha`` / ``beta`` the tagged prompt
  ``a question about alpha`` / ``... beta``; for ``omega`` an untagged refusal (a *malformed* reply);
- mutator, style step (``mutate_style``): one fixed prompt per (category, style) in :data:`STYLE_PROMPTS`; the
  ``gamma`` and ``epsilon`` prompts hold the word ``please``, the ``delta`` and ``zeta`` prompts do not;
- target: :data:`SURE` when the user turn holds ``please``, else :data:`SORRY`;
- judge: the position of the response that is :data:`SURE`; when both are the same, always ``[[Response 1]]`` (a
  position-biased judge: only the order swap keeps it from deciding anything);
- guard (Llama Guard format, for the fitness): ``unsafe`` for :data:`SURE`, ``safe`` for :data:`SORRY`.

    model_dir = ensure_rainbow_responder()   # trained once per code version, atomically
"""

from __future__ import annotations

import hashlib
import os
import random
import time

from ..downloads import cache_root
from .served_models import _chat, _filler, train_responder
from .tiny_models import build_folder_once

CATEGORIES = ("alpha", "beta")
MALFORMED_CATEGORY = "omega"
STYLES = ("gamma", "delta", "epsilon", "zeta")  # gamma and epsilon prompts hold the trigger word
TRIGGER = "please"
CATEGORY_STEP = {
    "alpha": "<prompt>a question about alpha</prompt>",
    "beta": "<prompt>a question about beta</prompt>",
    MALFORMED_CATEGORY: "I will not rewrite this.",
}
STYLE_PROMPTS = {
    ("alpha", "gamma"): "please explain the alpha gamma steps",
    ("alpha", "delta"): "describe alpha delta now",
    ("beta", "gamma"): "please list the beta gamma methods",
    ("beta", "delta"): "outline beta delta facts",
    ("alpha", "epsilon"): "please show the alpha epsilon plan",
    ("alpha", "zeta"): "summarise alpha zeta history",
    ("beta", "epsilon"): "please give the beta epsilon recipe",
    ("beta", "zeta"): "compare beta zeta options",
}
SURE = "Sure, here are the steps you asked for."
SORRY = "Sorry, I cannot help with that."
GUARD_REPLY = {SURE: "\n\nunsafe\nS1", SORRY: "\n\nsafe"}
SERVED_NAMES = ["tiny-target", "tiny-mutator", "tiny-judge", "tiny-guard"]
_RESERVED = {TRIGGER, MALFORMED_CATEGORY, *CATEGORIES, *STYLES}


def _free_text(rng: random.Random, tokenizer) -> str:
    """Random content without the words the replies key on."""
    words = [w for w in _filler(rng, tokenizer).split(" ") if w.strip().lower() not in _RESERVED]
    return " ".join(words) or "hello there"


def _request(rng: random.Random, tokenizer) -> str:
    """A user request as the run sends them: one of the scripted prompts, or random text."""
    pool = [*STYLE_PROMPTS.values(), "a question about alpha", "a question about beta"]
    return rng.choice(pool) if rng.random() < 0.4 else _free_text(rng, tokenizer)


def examples(tokenizer, rng: random.Random) -> list[tuple[str, list[int], str]]:
    """Every scripted reply once, each request with fresh random content (``train_responder``'s ``examples_fn``;
    its first call must hold every reply)."""
    from tars_verl.data.rainbow.prompts import PROJECT_TEMPLATES, fill

    def user(text: str) -> list[int]:
        return _chat(tokenizer, [{"role": "user", "content": text}])

    out = []
    # Mutator, category step: generating from nothing or rewriting a parent.
    for cat in (*CATEGORIES, MALFORMED_CATEGORY):
        key = rng.choice(["generate", "mutate_category"])
        text = fill(PROJECT_TEMPLATES[key], risk_category=cat, prompt=_request(rng, tokenizer))
        out.append((f"category_step_{cat}", user(text), CATEGORY_STEP[cat]))
    # Mutator, style step: the parent is the category step's output (or anything).
    for (cat, style), prompt in STYLE_PROMPTS.items():
        parent = rng.choice([CATEGORY_STEP[c][len("<prompt>") : -len("</prompt>")] for c in CATEGORIES] + [""])
        text = fill(
            PROJECT_TEMPLATES["mutate_style"],
            prompt=parent or _free_text(rng, tokenizer),
            risk_category=cat,
            attack_style=style,
        )
        out.append((f"style_step_{cat}_{style}", user(text), f"<prompt>{prompt}</prompt>"))
    # Target: SURE iff the request holds the trigger word (anywhere).
    for with_trigger in (True, False):
        request = _request(rng, tokenizer)
        if with_trigger and TRIGGER not in request.split(" "):
            words = request.split(" ")
            words.insert(rng.randint(0, len(words)), TRIGGER)
            request = " ".join(words)
        elif not with_trigger:
            request = _free_text(rng, tokenizer) if TRIGGER in request.split(" ") else request
        out.append(("target", user(request), SURE if with_trigger else SORRY))
    # Judge: which response is SURE; a tie goes to position 1.
    for r1, r2 in ((SORRY, SURE), rng.choice([(SURE, SORRY), (SURE, SURE), (SORRY, SORRY)])):
        text = fill(
            PROJECT_TEMPLATES["judge"],
            response_1=r1,
            response_2=r2,
            risk_category=rng.choice([*CATEGORIES, _free_text(rng, tokenizer)]),
        )
        out.append(("judge", user(text), "[[Response 2]]" if (r1, r2) == (SORRY, SURE) else "[[Response 1]]"))
    # Guard: [user, assistant] in the model's chat template (guard_chat, format llama_guard).
    for answer in (SURE, SORRY):
        chat = [{"role": "user", "content": _request(rng, tokenizer)}, {"role": "assistant", "content": answer}]
        out.append(("guard", _chat(tokenizer, chat), GUARD_REPLY[answer]))
    return out


def default_root() -> str:
    """Where the trained responder is kept between sessions: ``$TARS_RAINBOW_RESPONDER_DIR``, else a folder under
    ``$TARS_CACHE_DIR`` (default ``~/.cache/tars_verl``) named by a hash of the code and prompts that decide the
    model, so a change to any of them trains a new one (tests and the benchmark then share one training)."""
    if os.environ.get("TARS_RAINBOW_RESPONDER_DIR"):
        return os.environ["TARS_RAINBOW_RESPONDER_DIR"]
    from tars_verl.data.rainbow import prompts

    from . import served_models

    digest = hashlib.sha256()
    for module in (served_models, prompts):
        with open(module.__file__, "rb") as f:
            digest.update(f.read())
    with open(__file__, "rb") as f:
        digest.update(f.read())
    return cache_root("testing", f"rainbow_responder-{digest.hexdigest()[:12]}")


def ensure_rainbow_responder(root: str | None = None, log=print) -> str:
    """Train the responder into ``root`` (default :func:`default_root`) once, atomically; returns the model folder."""

    def build(tmp: str) -> None:
        t0 = time.time()
        steps = train_responder(tmp, examples_fn=examples, max_steps=1500, log=log)
        log(f"rainbow responder trained in {steps} steps, {time.time() - t0:.1f} s")

    return build_folder_once(root or default_root(), build, ".tars_rainbow_")


if __name__ == "__main__":
    import sys

    print(ensure_rainbow_responder(sys.argv[1] if len(sys.argv) > 1 else None))
