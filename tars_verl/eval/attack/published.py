"""HarmBench's published attack texts (PAIR's prompts, PAP's templates, the optimizer targets), read at run time from
their source and never copied into this project.

A *source* is HarmBench's repository: its raw base URL (default :data:`~tars_verl.eval.harmbench.HARMBENCH_BASE_URL`,
or ``$TARS_HARMBENCH_URL``; ``http(s)://`` and ``file://`` URLs are downloaded once into the cache of
:func:`tars_verl.eval.harmbench.fetch_cached`) or a local clone's folder; a file inside it is named by its path in
the repository (``baselines/pair/system_prompts.py``).

The Python files are read with :mod:`ast`, never run: :func:`function_strings` returns the string literals and
f-strings a function assigns to a variable, as :class:`Template` objects whose fields are the f-string's names.

>>> src = 'def greet(name, place):\\n    msg = f"Hello {name}, welcome to {place}."\\n    return msg\\n'
>>> [t.render(name="Ada", place="Paris") for t in function_strings(src, "greet", "msg", "x.py")]
['Hello Ada, welcome to Paris.']
>>> Template.from_format("{a} and {{b}}").render(a="1")
'1 and {b}'
"""

from __future__ import annotations

import ast
import os
import re
import string
from dataclasses import dataclass

# tars_verl.eval.harmbench (the download cache) is imported where a file is fetched: it loads the scorers (torch).


@dataclass(frozen=True)
class Template:
    """A text with named fields: ``parts`` alternates literal text (str) and field names (``("name",)``)."""

    parts: tuple
    where: str = ""

    @property
    def fields(self) -> set[str]:
        return {p[0] for p in self.parts if isinstance(p, tuple)}

    def render(self, **values: object) -> str:
        missing = sorted(self.fields - set(values))
        if missing:
            raise KeyError(f"{self.where}: no value for field(s) {missing}")
        return "".join(p if isinstance(p, str) else str(values[p[0]]) for p in self.parts)

    @classmethod
    def from_format(cls, text: str, where: str = "") -> Template:
        """A ``str.format`` template (``{name}`` fields, ``{{`` for a literal brace), as a JSON file gives it."""
        parts: list = []
        try:
            for literal, name, spec, conversion in string.Formatter().parse(text):
                if literal:
                    parts.append(literal)
                if name is not None:
                    if not name.isidentifier() or spec or conversion:
                        raise ValueError(f"field {{{name}}} must be a plain name")
                    parts.append((name,))
        except ValueError as err:
            raise ValueError(f"{where}: not a str.format template ({err})") from err
        return cls(tuple(parts), where)


def is_url(source: str) -> bool:
    return bool(re.match(r"^(https?|file)://", source))


def read_text(source: str, what: str, hint: str = "", cache_dir: str | None = None) -> str:
    """The text of a URL (downloaded once, cached) or a local file; errors name the URL/path and what it is."""
    if is_url(source):
        from tars_verl.eval.harmbench import fetch_cached

        return fetch_cached(source, cache_dir, what, hint).decode("utf-8")
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{what}: file not found: {source}{'; ' + hint if hint else ''}")
    with open(source, encoding="utf-8") as f:
        return f.read()


def read_published(base: str | None, path: str, what: str, hint: str = "", cache_dir: str | None = None) -> str:
    """HarmBench's file ``path`` (repository path) under ``base``: a URL or a local clone (default: HarmBench's
    repository)."""
    if not base:
        from tars_verl.eval.harmbench import HARMBENCH_BASE_URL

        base = HARMBENCH_BASE_URL
    base = base.rstrip("/")
    return read_text(f"{base}/{path}" if is_url(base) else os.path.join(base, path), what, hint, cache_dir)


def _template(node: ast.expr, where: str) -> Template:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return Template((node.value,), where)
    if not isinstance(node, ast.JoinedStr):
        raise ValueError(f"{where}: not a string literal or f-string (line {node.lineno})")
    parts: list = []
    for value in node.values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            parts.append(value.value)
        elif (
            isinstance(value, ast.FormattedValue)
            and isinstance(value.value, ast.Name)
            and value.conversion == -1
            and value.format_spec is None
        ):
            parts.append((value.value.id,))
        else:
            raise ValueError(f"{where}: the f-string holds an expression other than a plain name (line {node.lineno})")
    return Template(tuple(parts), where)


def function_strings(source: str, function: str, variable: str, where: str) -> list[Template]:
    """The strings that function (or method) ``function`` assigns to ``variable`` (a name, or ``self.variable``),
    in source order. Each f-string field must be one of the function's parameters. Raises ValueError naming
    ``where`` when the function or the assignment is not there (the published file changed shape)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"{where}: not Python source ({err})") from err
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function]
    if not funcs:
        raise ValueError(f"{where}: no function {function}()")
    found: list[tuple[int, int, Template]] = []
    for func in funcs:
        params = {a.arg for a in func.args.args + func.args.kwonlyargs + func.args.posonlyargs}
        for node in ast.walk(func):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
                if name != variable:
                    continue
                tpl = _template(node.value, f"{where}: {function}().{variable}")
                unknown = sorted(tpl.fields - params)
                if unknown:
                    raise ValueError(f"{tpl.where}: field(s) {unknown} are not parameters of {function}()")
                found.append((node.lineno, node.col_offset, tpl))
    if not found:
        raise ValueError(f"{where}: {function}() assigns no string to {variable!r}")
    return [tpl for _, _, tpl in sorted(found, key=lambda f: f[:2])]  # source order (ast.walk is breadth-first)


def module_value(source: str, name: str, where: str):
    """The literal value (list, dict, str...) assigned to the module-level ``name``, read with ``ast.literal_eval``."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"{where}: not Python source ({err})") from err
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError as err:
                raise ValueError(f"{where}: {name} is not a literal ({err})") from err
    raise ValueError(f"{where}: no module-level assignment to {name}")
