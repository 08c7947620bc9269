"""HarmBench's published texts the white-box attacks need, read at run time from HarmBench's own files (never
written into this project): a URL (downloaded once into a cache), a local clone's folder, or a file the user names.

- ``baselines/check_refusal_utils.py``: ``REFUSAL_PREFIXES``, the phrases of the refusal check that stops GCG and
  AutoDAN early (:func:`load_refusal_prefixes`);
- ``baselines/autodan/templates.py``: ``REFERENCES``, AutoDAN's reference prompts (:func:`load_autodan_references`);
- ``baselines/autodan/AutoDAN.py``: ``self.autodan_target_prefix``, the text AutoDAN puts before each target string
  (:func:`load_autodan_target_prefix`);
- ``baselines/autodan/mutate_models.py``: the mutation LLM's prompt (:func:`load_mutation_prompt`), from the class
  HarmBench uses for a vLLM-served mutator (``VLLM``: a user turn and the start of the assistant's reply) or for an
  OpenAI model (``GPT``: a system and a user message).

Python sources are read with ``ast`` and never run. Each loader also takes a JSON file of the same content (a list
of strings, a string, or ``{"system", "user", "assistant_prefix"}``), for users without access to GitHub.

>>> python_constant('X = ["a", "b"]\\nY = 1', "X", "demo.py")
['a', 'b']
>>> fstring_template(ast.parse("f\\"Revise: '{sentence}' {{ok}}\\"").body[0].value, "demo.py")
"Revise: '{sentence}' {{ok}}"
"""

from __future__ import annotations

import ast
import json
import os
import re
import string
from dataclasses import dataclass

from tars_verl.eval.harmbench import fetch_cached

REFUSAL_PREFIXES_PATH = "baselines/check_refusal_utils.py"
AUTODAN_REFERENCES_PATH = "baselines/autodan/templates.py"
AUTODAN_METHOD_PATH = "baselines/autodan/AutoDAN.py"
AUTODAN_MUTATOR_PATH = "baselines/autodan/mutate_models.py"
# mutate_models.py class per mutator style: a vLLM-served open model (HarmBench's default, Mistral-7B-Instruct-v0.2)
# or an OpenAI chat model.
MUTATOR_CLASSES = {"vllm": "VLLM", "openai": "GPT"}


def source_under(base: str, path: str) -> str:
    """``path`` (relative, e.g. ``baselines/autodan/templates.py``) under ``base``: HarmBench's raw URL or a folder."""
    return f"{base.rstrip('/')}/{path}" if re.match(r"^https?://", base) else os.path.join(base, path)


def read_source(source: str, what: str, cache_dir: str | None = None) -> str:
    """The text of ``source``: a URL (downloaded once into ``cache_dir``) or a local file. Errors name the source."""
    if re.match(r"^https?://", source):
        hint = f"download it yourself and pass the file instead (the {what} option), or point harmbench_url at a copy"
        return fetch_cached(source, cache_dir, f"HarmBench {what}", hint).decode("utf-8")
    if not os.path.isfile(source):
        raise FileNotFoundError(f"HarmBench {what}: file not found: {source}")
    with open(source, encoding="utf-8") as f:
        return f.read()


def _parse(text: str, where: str) -> ast.Module:
    try:
        return ast.parse(text)
    except SyntaxError as err:
        raise ValueError(f"{where}: neither JSON nor Python source ({err})") from err


def python_constant(text: str, name: str, where: str):
    """The literal value of the module-level assignment ``name = ...`` in Python source ``text`` (not run)."""
    for node in _parse(text, where).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError as err:
                raise ValueError(f"{where}: {name} is not a literal ({err})") from err
    raise ValueError(f"{where}: no module-level assignment {name} = ... found")


def fstring_template(node: ast.AST, where: str) -> str:
    """An f-string's text as a ``str.format`` template: literal braces doubled, each ``{name}`` kept (only plain names,
    without conversion or format spec: anything else is an error naming ``where``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if not isinstance(node, ast.JoinedStr):
        raise ValueError(f"{where}: expected an f-string, found {type(node).__name__}")
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            parts.append(value.value.replace("{", "{{").replace("}", "}}"))
        elif (
            isinstance(value, ast.FormattedValue)
            and isinstance(value.value, ast.Name)
            and value.conversion == -1
            and value.format_spec is None
        ):
            parts.append("{" + value.value.id + "}")
        else:
            raise ValueError(f"{where}: the f-string holds an expression other than a plain {{name}}")
    return "".join(parts)


def _json_or_none(text: str, where: str):
    """The JSON value of a ``.json`` file or of a text that starts like a JSON list or object; None for Python."""
    if not (where.lower().endswith(".json") or text.lstrip()[:1] in ("[", "{")):
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        raise ValueError(f"{where}: not valid JSON ({err})") from err


def _string_list(value, where: str, what: str, min_items: int = 1) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or len(value) < min_items:
        raise ValueError(f"{where}: {what} must be a list of at least {min_items} non-empty strings")
    return value


def load_refusal_prefixes(source: str, cache_dir: str | None = None) -> list[str]:
    """HarmBench's refusal phrases: ``REFUSAL_PREFIXES`` of ``check_refusal_utils.py`` (URL or file), or a JSON list."""
    text = read_source(source, "refusal prefixes (refusal_prefixes)", cache_dir)
    value = _json_or_none(text, source)
    if value is None:
        value = python_constant(text, "REFUSAL_PREFIXES", source)
    return _string_list(value, source, "REFUSAL_PREFIXES")


def load_autodan_references(source: str, min_items: int = 1, cache_dir: str | None = None) -> list[str]:
    """AutoDAN's reference prompts: ``REFERENCES`` of HarmBench's ``baselines/autodan/templates.py`` (URL or file), or
    a JSON list; at least ``min_items`` of them (the first ``batch_size`` are the initial population)."""
    text = read_source(source, "AutoDAN references (references)", cache_dir)
    value = _json_or_none(text, source)
    if value is None:
        value = python_constant(text, "REFERENCES", source)
    return _string_list(value, source, "REFERENCES", min_items)


def load_autodan_target_prefix(source: str, cache_dir: str | None = None) -> str:
    """The text AutoDAN prepends to each target string: the ``self.autodan_target_prefix = "..."`` assignment of
    HarmBench's ``baselines/autodan/AutoDAN.py`` (URL or file), or a JSON string."""
    text = read_source(source, "AutoDAN method source (target_prefix)", cache_dir)
    value = _json_or_none(text, source)
    if value is None:
        for node in ast.walk(_parse(text, source)):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "autodan_target_prefix" for t in node.targets
            ):
                value = ast.literal_eval(node.value)
                break
        else:
            raise ValueError(f"{source}: no `self.autodan_target_prefix = ...` assignment found")
    if not isinstance(value, str):
        raise ValueError(f"{source}: the AutoDAN target prefix must be a string")
    return value


@dataclass(frozen=True)
class MutationPrompt:
    """What the mutation LLM is sent for one text: an optional system message, the user message (a ``str.format``
    template with ``{sentence}``) and, for the vLLM style, the start of the assistant's reply that the model
    continues (followed by the text's first two words, as HarmBench does)."""

    user: str
    system: str = ""
    assistant_prefix: str = ""

    def validate(self, where: str) -> MutationPrompt:
        try:
            names = {n for _, n, _, _ in string.Formatter().parse(self.user) if n is not None}
        except ValueError as err:
            raise ValueError(f"{where}: the mutation prompt is not a str.format template ({err})") from err
        if names != {"sentence"}:
            raise ValueError(
                f"{where}: the mutation prompt must have exactly the placeholder {{sentence}}, has {names}"
            )
        return self


def _method(cls: ast.ClassDef, name: str, where: str) -> ast.FunctionDef:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise ValueError(f"{where}: class {cls.name} has no method {name}()")


def _user_fstring(func: ast.FunctionDef, where: str) -> str:
    """The f-string with ``{sentence}`` in ``func``: HarmBench writes the mutation request that way in each class."""
    found = [n for n in ast.walk(func) if isinstance(n, ast.JoinedStr) and "{sentence}" in fstring_template(n, where)]
    if len(found) != 1:
        raise ValueError(f"{where}: expected one f-string with {{sentence}} in {func.name}(), found {len(found)}")
    return fstring_template(found[0], where)


def load_mutation_prompt(source: str, style: str = "vllm", cache_dir: str | None = None) -> MutationPrompt:
    """The AutoDAN mutation prompt of ``style`` (``vllm``: class ``VLLM``, HarmBench's default mutator; ``openai``:
    class ``GPT``) from HarmBench's ``mutate_models.py`` (URL or file), or a JSON file
    ``{"user": "...{sentence}...", "system": "...", "assistant_prefix": "..."}`` (style then only says how it is sent).
    """
    if style not in MUTATOR_CLASSES:
        raise ValueError(f"mutator_style must be one of {sorted(MUTATOR_CLASSES)}, got {style!r}")
    text = read_source(source, "AutoDAN mutation prompt (mutator_prompt)", cache_dir)
    value = _json_or_none(text, source)
    if value is not None:
        if not isinstance(value, dict) or not isinstance(value.get("user"), str):
            raise ValueError(
                f"{source}: expected a JSON object with a 'user' template (and optional 'system', 'assistant_prefix')"
            )
        return MutationPrompt(value["user"], value.get("system", ""), value.get("assistant_prefix", "")).validate(
            source
        )
    tree = _parse(text, source)
    name = MUTATOR_CLASSES[style]
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None:
        raise ValueError(f"{source}: no class {name} (the {style} mutator) found")
    where = f"{source} ({name})"
    if style == "openai":
        # system message: `self.system_msg = "..."` in __init__; user message: the f-string in generate().
        system = None
        for node in ast.walk(_method(cls, "__init__", where)):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "system_msg" for t in node.targets
            ):
                system = ast.literal_eval(node.value)
        if not isinstance(system, str):
            raise ValueError(f"{where}: no `self.system_msg = '...'` string in __init__()")
        return MutationPrompt(_user_fstring(_method(cls, "generate", where), where), system=system).validate(where)
    func = _method(cls, "batched_generate", where)
    # The reply's start: the one non-blank string literal added (`+`) to the chat-formatted prompt.
    prefixes = [
        side.value
        for node in ast.walk(func)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
        for side in (node.left, node.right)
        if isinstance(side, ast.Constant) and isinstance(side.value, str) and side.value.strip()
    ]
    if len(prefixes) != 1:
        raise ValueError(f"{where}: expected one string literal that starts the reply, found {len(prefixes)}")
    return MutationPrompt(_user_fstring(func, where), assistant_prefix=prefixes[0]).validate(where)
