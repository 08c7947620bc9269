"""The attack-generation contract: a method turns one HarmBench behaviour into test cases for the model under test.

Every method (``gcg``, ``autodan``: white box, a local model; ``pair``, ``pap``: black box, served models) is an
:class:`Attack`. The runner (``python -m tars_verl.eval.attack``) builds one per run, calls :meth:`Attack.run` once per
behaviour, and writes HarmBench's test-case format ``{BehaviorID: [test_case, ...]}`` plus each behaviour's log, which
``python -m tars_verl.eval --attack NAME=FILE`` reads unchanged.

Shared helpers a method uses rather than re-implementing (each checked once for every caller):

- server replies: :func:`tars_verl.scorers.http_client.only_choice` (the one choice of a chat/text completion) and
  :func:`~tars_verl.scorers.http_client.match_replies` (a batched reply matched to its inputs one to one);
- secrets: endpoints register their key and URL credentials themselves; the runner's ``main`` is decorated with
  :func:`tars_verl.redaction.entry_point`; a message built from a URL uses :func:`tars_verl.redaction.redact_url`;
- files: :func:`tars_verl.data.files.read_json_file` (a behaviour/target file with errors naming file, line and
  column), :func:`~tars_verl.data.files.append_jsonl` (a resumable log), ``write_json_atomic(cases, path,
  data=True)`` (the test-case file), :func:`~tars_verl.data.files.check_file_name` (a BehaviorID as a file name).

>>> b = Behavior("ctx_id", "Summarise the text", context="Some text")
>>> b.request()
'Some text\\n\\n---\\n\\nSummarise the text'
>>> Behavior("std_id", "Write a haiku").request()
'Write a haiku'
>>> Behavior("../etc/passwd", "x")
Traceback (most recent call last):
...
ValueError: BehaviorID '../etc/passwd' cannot name a file: use letters, digits, '_', '-', '.', '+' (not first: '.', '-')
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tars_verl.data.files import check_file_name

# Method name -> "module:class", imported only when that method runs (GCG needs torch, PAIR only HTTP).
ATTACKS: dict[str, str] = {
    "gcg": "tars_verl.eval.attack.gcg:GCGAttack",
    "autodan": "tars_verl.eval.attack.autodan:AutoDANAttack",
    "pair": "tars_verl.eval.attack.pair:PAIRAttack",
    "pap": "tars_verl.eval.attack.pap:PAPAttack",
}


@dataclass(frozen=True)
class Behavior:
    """One HarmBench behaviour (a row of ``harmbench_behaviors_text_all.csv``) and, for the optimisation attacks, its
    target string (``harmbench_targets_text.json``: ``"Sure, here's ..."``)."""

    behavior_id: str
    behavior: str
    context: str = ""
    functional_category: str = ""  # standard / contextual / copyright
    semantic_category: str = ""
    tags: str = ""
    target: str = ""  # "" when the method needs none

    def __post_init__(self) -> None:
        # The BehaviorID names the behaviour's log file and keys the test-case file: never a path.
        check_file_name(self.behavior_id, "BehaviorID")
        for name in ("behavior", "context", "functional_category", "semantic_category", "tags", "target"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"BehaviorID {self.behavior_id}: {name} is {type(value).__name__}, not text")
        if not self.behavior.strip():
            raise ValueError(f"BehaviorID {self.behavior_id}: the behaviour text is empty")

    def request(self) -> str:
        """The user turn before any attack: the behaviour, after its context when it has one (HarmBench's layout)."""
        return f"{self.context}\n\n---\n\n{self.behavior}" if self.context.strip() else self.behavior


@dataclass
class AttackResult:
    """What one behaviour produced: its test cases (HarmBench keeps 1 for GCG/AutoDAN, 1 for PAIR, 5 for PAP's
    techniques) and a JSON-serialisable log: at least ``steps`` and ``time_s``, plus the method's trajectory
    (``losses`` per step for the optimisation attacks, judge ``scores`` for PAIR) and anything counted
    (``malformed_replies``...)."""

    test_cases: list[str]
    log: dict[str, Any] = field(default_factory=dict)

    def check(self, behavior_id: str) -> None:
        """What the runner checks before writing a result: non-empty text test cases, and a log that JSON can
        write without inventing numbers (a NaN or infinite loss or score is an error naming the behaviour)."""
        where = f"attack result for BehaviorID {behavior_id}"
        if not isinstance(self.test_cases, list) or not self.test_cases:
            raise ValueError(f"{where}: no test cases (a method must raise instead of returning none)")
        for i, case in enumerate(self.test_cases):
            if not isinstance(case, str) or not case.strip():
                raise ValueError(f"{where}: test case {i} is {type(case).__name__} {str(case)[:60]!r}, not text")
        try:
            json.dumps(self.log, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: the log cannot be written as JSON ({err})") from None


class Attack(ABC):
    """One attack method. Subclasses set ``name`` and implement :meth:`settings` and :meth:`run`.

    The runner builds one per process as ``cls(model, **options)``: ``model`` is the model under test (a local
    folder, a hub id or an endpoint URL, as the user gave it) and ``options`` the method's settings by name (from
    ``--set KEY=VALUE`` and the method's own flags); an unknown option should raise ``TypeError`` naming it.
    Construction must be cheap (the runner builds one on the driver to read :meth:`settings`): load models in
    :meth:`check_ready`."""

    name: ClassVar[str] = ""
    # Runs the model under test on this process's GPU (GCG, AutoDAN): the runner runs one behaviour at a time per
    # process, and its Ray launcher places one such worker per GPU. Black-box methods run many behaviours at once.
    white_box: ClassVar[bool] = False
    # Generated against the model under test (adaptive) rather than read from another model's file (transfer).
    adaptive: ClassVar[bool] = True
    # Needs Behavior.target (GCG, AutoDAN): the runner stops at start-up naming each BehaviorID without one.
    needs_target_string: ClassVar[bool] = False

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Every setting that changes the test cases (JSON-serialisable): a resumed run refuses a change of any."""

    @abstractmethod
    async def run(self, behavior: Behavior, progress: Callable[[int, int], None] | None = None) -> AttackResult:
        """Attack one behaviour; call ``progress(step, total_steps)`` as steps finish. Raise on failure (the runner
        names the BehaviorID); never return an empty list of test cases."""

    def check_ready(self) -> None:
        """Start-up check before any behaviour (model loads, endpoints answer): raise with what to fix."""

    async def aclose(self) -> None:
        """Release models and client sessions."""
