"""The archive's two feature dimensions: risk categories (rows) and attack styles (columns).

Defaults, and where they come from:

- :data:`PAPER_RISK_CATEGORIES`: the 10 risk categories of Rainbow Teaming (arXiv 2402.16822, Appendix H.1), in the
  paper's order. The TARS authors' seven archives (``danielkty/tars``, ``scripts/data/rainbow_archives/``) have 10
  rows whose prompts follow this order (row 0 violence, 1 sexual content, 2 criminal planning, ..., 9 terrorism).
- :data:`TARS_ATTACK_STYLES`: the paper's 10 attack styles (Appendix H.1), in its order, then two more. The TARS
  archives have 12 columns: columns 0-9 read as the paper's 10 styles in order (slang, technical terms, role play,
  ...), column 10 holds nonsense-word prompts and column 11 prompts framed as Python code. The authors published no
  names for those two; :data:`TARS_EXTRA_STYLES` names them ``Gibberish`` and ``Code`` (our names).

Both lists can be replaced from a file (``--risk-categories FILE``, ``--attack-styles FILE``): a ``.txt`` file with
one name per line (blank lines and lines starting with ``#`` skipped) or a ``.json`` list of strings.

>>> len(PAPER_RISK_CATEGORIES), len(TARS_ATTACK_STYLES)
(10, 12)
>>> TARS_ATTACK_STYLES[:3], TARS_ATTACK_STYLES[-2:]
(('Slang', 'Technical Terms', 'Role Play'), ('Gibberish', 'Code'))
"""

from __future__ import annotations

import json
import os

PAPER_RISK_CATEGORIES = (
    "Violence and Hate",
    "Sexual Content",
    "Criminal Planning",
    "Guns and Illegal Weapons",
    "Regulated or Controlled Substances",
    "Self-Harm",
    "Inciting or Abetting Discrimination",
    "Fraud and Scams",
    "Cybercrime and Hacking",
    "Terrorism",
)
PAPER_ATTACK_STYLES = (
    "Slang",
    "Technical Terms",
    "Role Play",
    "Authority Manipulation",
    "Misspellings",
    "Word Play",
    "Emotional Manipulation",
    "Hypotheticals",
    "Historical Scenario",
    "Uncommon Dialects",
)
TARS_EXTRA_STYLES = ("Gibberish", "Code")
TARS_ATTACK_STYLES = PAPER_ATTACK_STYLES + TARS_EXTRA_STYLES


def load_names(path: str, what: str) -> tuple[str, ...]:
    """Names from a ``.txt`` (one a line) or ``.json`` (a list) file; errors name the file, the line and ``what``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{what} file {path}: not valid JSON ({err})") from None
        if not isinstance(data, list):
            raise ValueError(f"{what} file {path}: expected a JSON list of names, got {type(data).__name__}")
        names = []
        for i, item in enumerate(data):
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"{what} file {path}: item {i} is {item!r}, not a non-empty string")
            names.append(item.strip())
    else:
        names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return check_names(names, f"{what} file {path}")


def check_names(names, where: str) -> tuple[str, ...]:
    """At least one name, all distinct (case-insensitively): two equal names would be one cell twice."""
    names = tuple(names)
    if not names:
        raise ValueError(f"{where}: no names")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: entry {i} is {name!r}, not a non-empty string")
        key = name.strip().casefold()
        if key in seen:
            raise ValueError(f"{where}: {name!r} appears twice (entries {seen[key]} and {i})")
        seen[key] = i
    return names
