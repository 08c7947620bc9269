"""HarmBench's judges, used as HarmBench uses them: the Llama-2 classifier
(``cais/HarmBench-Llama-2-13b-cls``) and, for copyright behaviours, hashing (:mod:`tars_verl.eval.copyright`).

- The classifier's own prompts, a standard one (``{behavior}``, ``{generation}``) and a contextual one
  (``{context}``, ``{behavior}``, ``{generation}``), are read at run time from their published source,
  never written into this project: HarmBench's ``eval_utils.py`` (the ``LLAMA2_CLS_PROMPT`` dict, read
  with ``ast`` without running the file), from a URL or a local copy, or a JSON file the user names
  (``{"prompt": ..., "prompt_contextual": ...}``). Default: ``eval_utils.py`` under ``base_url``
  (:data:`HARMBENCH_BASE_URL`, or ``$TARS_HARMBENCH_URL``).
- Each generation is clipped to 512 tokens of the classifier's tokenizer before judging, as HarmBench
  does it: ``decode(encode(generation, max_length=512, truncation=True), skip_special_tokens=True)``
  (right truncation; the count includes the BOS a Llama tokenizer adds). Templates are filled with
  ``str.format``, as HarmBench fills them.
- Behaviours with a context are judged with the contextual prompt and their context.
- Text completion, greedy, one token; ``Yes`` = the generation is an instance of the behaviour (unsafe),
  ``No`` = safe; any other reply is an error, never a default verdict.
- Copyright behaviours never reach the classifier: their (clipped) generation is compared with the
  published reference hashes (``data/copyright_classifier_hashes/<BehaviorID>.pkl`` under ``base_url``,
  or ``copyright_hashes``: a folder or base URL of such files). The hashes of every copyright behaviour
  to be judged are loaded when the judge is built, before any generation; a missing one is an error.

Downloads are cached under ``cache_dir`` (default ``$TARS_CACHE_DIR/harmbench`` or
``~/.cache/tars_verl/harmbench``), one file per URL, and read from there on later runs; a file is parsed before
it is cached, so an HTML page, a truncated download or a wrong file never poisons a later run
(:mod:`tars_verl.downloads`).

Serve the classifier with ``vllm serve cais/HarmBench-Llama-2-13b-cls --served-model-name ...``.
Requests go through the project's shared HTTP layer (bounded concurrency, retries).
"""

from __future__ import annotations

import ast
import json
import os
import re
import string
from dataclasses import dataclass

from tars_verl.downloads import fetch_cached as _fetch_cached
from tars_verl.eval.copyright import HASHES_PATH, best_similarity, load_copyright_behaviors, load_references
from tars_verl.eval.copyright import THRESHOLD as COPYRIGHT_THRESHOLD
from tars_verl.redaction import redact_url
from tars_verl.scorers.base import ScoreItem, ScorerConfigError, ScorerError, ScoreResult
from tars_verl.scorers.http_client import HttpEndpoint, HttpScorerConfig, check_endpoint_sync, only_choice

# HarmBench's published files (its repository's main branch, raw); TARS_HARMBENCH_URL points elsewhere (a mirror).
HARMBENCH_BASE_URL = os.environ.get(
    "TARS_HARMBENCH_URL", "https://raw.githubusercontent.com/centerforaisafety/HarmBench/main"
)
PROMPTS_PATH = "eval_utils.py"
HARMBENCH_PROMPTS_URL = f"{HARMBENCH_BASE_URL}/{PROMPTS_PATH}"
CLASSIFIER = "cais/HarmBench-Llama-2-13b-cls"
MAX_GENERATION_TOKENS = 512
_FIELDS = {"prompt": ("behavior", "generation"), "prompt_contextual": ("context", "behavior", "generation")}


def default_cache_dir() -> str:
    root = os.environ.get("TARS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "tars_verl")
    return os.path.join(root, "harmbench")


def fetch_cached(
    url: str, cache_dir: str | None = None, what: str = "HarmBench file", hint: str = "", check=None
) -> bytes:
    """The bytes at ``url``, downloaded once into ``cache_dir`` (:func:`tars_verl.downloads.fetch_cached`: a 404 is
    :class:`FileNotFoundError` naming the URL; a truncated download, an HTML page or bytes that fail ``check`` are
    never cached, and a bad cached copy is an error naming the cache file)."""
    return _fetch_cached(url, cache_dir or default_cache_dir(), what, hint, check)


_PROMPTS_HINT = (
    "download HarmBench's eval_utils.py yourself and pass it with --harmbench-prompts PATH, or point "
    "--harmbench-url at a copy of HarmBench's repository files"
)


def _read_source(source: str, cache_dir: str | None = None) -> tuple[str, str]:
    if re.match(r"^https?://", source):
        where = redact_url(source)
        data = fetch_cached(
            source,
            cache_dir,
            "HarmBench classifier prompts",
            _PROMPTS_HINT,
            check=lambda data: parse_classifier_prompts(_utf8(data, where), where),
        )
        return data.decode("utf-8"), where
    if not os.path.exists(source):
        raise FileNotFoundError(f"HarmBench classifier prompts file not found: {source}")
    with open(source, "rb") as f:
        return _utf8(f.read(), source), source


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text (byte {err.start}: {data[err.start : err.start + 4]!r})") from None


def load_classifier_prompts(source: str = HARMBENCH_PROMPTS_URL, cache_dir: str | None = None) -> dict[str, str]:
    """``{"prompt": standard, "prompt_contextual": contextual}`` from a JSON file, or the
    ``LLAMA2_CLS_PROMPT`` assignment of a Python source (HarmBench's ``eval_utils.py``), file or URL
    (downloaded once into ``cache_dir``)."""
    text, where = _read_source(source, cache_dir)
    return parse_classifier_prompts(text, where)


def parse_classifier_prompts(text: str, where: str) -> dict[str, str]:
    """The two templates from the text of a prompts file (JSON or ``eval_utils.py``); ValueError naming ``where``."""
    prompts = None
    if text.lstrip().startswith("{"):
        try:
            prompts = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{where}: not valid JSON ({err})") from err
    else:
        try:
            tree = ast.parse(text)
        except SyntaxError as err:
            raise ValueError(f"{where}: neither a JSON object nor Python source ({err})") from None
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "LLAMA2_CLS_PROMPT" for t in node.targets
            ):
                try:
                    prompts = ast.literal_eval(node.value)
                except ValueError as err:
                    raise ValueError(f"{where}: LLAMA2_CLS_PROMPT is not a literal ({err})") from None
                break
        if prompts is None:
            raise ValueError(f"{where}: no LLAMA2_CLS_PROMPT = {{...}} assignment found")
    if not isinstance(prompts, dict):
        raise ValueError(f"{where}: expected an object with keys 'prompt' and 'prompt_contextual'")
    for key, fields in _FIELDS.items():
        if not isinstance(prompts.get(key), str):
            raise ValueError(f"{where}: missing the {key!r} template")
        try:
            found = {name for _, name, _, _ in string.Formatter().parse(prompts[key]) if name is not None}
        except ValueError as err:
            raise ValueError(f"{where}: template {key!r} is not a str.format template ({err})") from err
        if found != set(fields):
            raise ValueError(
                f"{where}: template {key!r} has placeholders {sorted(found)}; expected {list(fields)} "
                f"(missing {sorted(set(fields) - found)})"
            )
    return {k: prompts[k] for k in _FIELDS}


def fill(template: str, **fields: str) -> str:
    """``template.format(**fields)``, as HarmBench fills its prompts (texts inserted are not re-parsed)."""
    return template.format(**fields)


@dataclass
class HarmBenchClassifierConfig(HttpScorerConfig):
    backend: str = "harmbench_classifier"
    url: str = "http://127.0.0.1:8004/v1"
    model: str = CLASSIFIER
    # Where HarmBench's published files are (its repository, raw; or a local clone's folder): eval_utils.py
    # and the copyright hashes.
    base_url: str = HARMBENCH_BASE_URL
    # The classifier's prompts: HarmBench's eval_utils.py (URL or file) or a JSON file {prompt, prompt_contextual};
    # empty = eval_utils.py under base_url.
    prompts: str = ""
    # Copyright reference hashes: a folder or base URL of <BehaviorID>.pkl; empty = HASHES_PATH under base_url.
    copyright_hashes: str = ""
    # Where downloads are kept (empty = $TARS_CACHE_DIR/harmbench or ~/.cache/tars_verl/harmbench).
    cache_dir: str = ""
    # Tokenizer used to clip generations (the classifier's own; a local folder or hub id).
    tokenizer: str = CLASSIFIER
    max_generation_tokens: int = MAX_GENERATION_TOKENS
    max_concurrency: int = 64

    def validate(self) -> None:
        super().validate()
        if self.max_generation_tokens < 1:
            raise ScorerConfigError(f"{self.backend}.max_generation_tokens must be >= 1")
        if not (self.base_url or "").strip():
            raise ScorerConfigError(f"{self.backend}.base_url is empty: give HarmBench's URL or a local clone")

    def prompts_source(self) -> str:
        return self.prompts or f"{self.base_url.rstrip('/')}/{PROMPTS_PATH}"

    def hashes_source(self) -> str:
        return self.copyright_hashes or f"{self.base_url.rstrip('/')}/{HASHES_PATH}"


class HarmBenchClassifier:
    """``score`` returns 1.0 for safe (classifier says No; copyright text not reproduced) and 0.0 for unsafe,
    like the other safety judges. ``ScoreItem.prompt`` is the behaviour; ``contexts`` holds the context per
    item and ``copyright_ids`` the BehaviorID of items that are copyright behaviours ("" for the others).

    ``copyright_behaviors``: {BehaviorID: "book" | "lyrics"} of the copyright behaviours this judge will see
    (:func:`tars_verl.eval.copyright.check_copyright_rows`); their reference hashes are loaded here."""

    def __init__(self, config: HarmBenchClassifierConfig, copyright_behaviors: dict[str, str] | None = None):
        config.validate()
        self.config = config
        cache_dir = config.cache_dir or None
        self.prompts = load_classifier_prompts(config.prompts_source(), cache_dir)
        self.copyright = {}
        if copyright_behaviors:
            hint = "download HarmBench's data/copyright_classifier_hashes folder and pass --harmbench-hashes FOLDER"
            self.copyright = load_copyright_behaviors(
                copyright_behaviors,
                config.hashes_source(),
                lambda url: fetch_cached(
                    url,
                    cache_dir,
                    "HarmBench copyright hashes",
                    hint,
                    check=lambda data: load_references(data, redact_url(url)),
                ),
            )
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(config.tokenizer)
        self.tokenizer.truncation_side = "right"
        self.endpoint = HttpEndpoint.from_config(config)

    def check_ready(self) -> None:
        check_endpoint_sync(self.config)

    def clip(self, generation: str) -> str:
        ids = self.tokenizer.encode(generation, max_length=self.config.max_generation_tokens, truncation=True)
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def render(self, behavior: str, generation: str, context: str = "") -> str:
        generation = self.clip(generation)
        if context:
            return fill(self.prompts["prompt_contextual"], context=context, behavior=behavior, generation=generation)
        return fill(self.prompts["prompt"], behavior=behavior, generation=generation)

    async def _one(self, item: ScoreItem, context: str) -> ScoreResult:
        payload = {
            "model": self.config.model,
            "prompt": self.render(item.prompt, item.text, context),
            "max_tokens": 1,
            "temperature": 0.0,
        }
        body = await self.endpoint.post_json("/completions", payload)
        where = self.endpoint.where("/completions")
        reply = only_choice(body, where).get("text")
        if reply is not None and not isinstance(reply, str):
            raise ScorerError(f"{where}: the choice's text is {type(reply).__name__}, not text: {str(body)[:200]!r}")
        verdict = (reply or "").strip().lower()
        if verdict not in ("yes", "no"):
            raise ScorerError(
                f"{where}: HarmBench classifier replied {reply!r}, "
                f"not Yes/No (is the served model {self.config.model} the HarmBench classifier?)"
            )
        return ScoreResult(1.0 if verdict == "no" else 0.0, {"verdict": verdict, "contextual": bool(context)})

    def judge_copyright(self, behavior_id: str, generation: str) -> ScoreResult:
        """HarmBench's hash check of the clipped generation against the behaviour's reference text."""
        ref = self.copyright.get(behavior_id)
        if ref is None:
            raise ScorerError(
                f"HarmBench copyright behaviour {behavior_id!r}: its reference hashes were not loaded when the "
                f"judge was built (build it with build_judge(..., prompts=...) so that they are)"
            )
        similarity = best_similarity(self.clip(generation), ref.references, ref.kind)
        reproduced = similarity > COPYRIGHT_THRESHOLD
        return ScoreResult(
            0.0 if reproduced else 1.0,
            {"verdict": "reproduced" if reproduced else "not reproduced", "method": "hash", "similarity": similarity},
        )

    async def score(
        self, items: list[ScoreItem], contexts: list[str] | None = None, copyright_ids: list[str] | None = None
    ) -> list[ScoreResult]:
        import asyncio

        contexts = contexts or [""] * len(items)
        copyright_ids = copyright_ids or [""] * len(items)
        results: list[ScoreResult | None] = [None] * len(items)
        # Copyright behaviours are hashed here and never sent to the classifier, as HarmBench routes them.
        for i, (item, bid) in enumerate(zip(items, copyright_ids)):
            if bid:
                results[i] = self.judge_copyright(bid, item.text)
        todo = [i for i, bid in enumerate(copyright_ids) if not bid]
        for i, r in zip(todo, await asyncio.gather(*(self._one(items[i], contexts[i]) for i in todo))):
            results[i] = r
        return results

    async def aclose(self) -> None:
        await self.endpoint.aclose()
