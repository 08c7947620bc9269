"""The attack-generation contract: a method turns one HarmBench behaviour into test cases for the model under test.

Every method (``gcg``, ``autodan``: white box, a local model; ``pair``, ``pap``: black box, served models) is an
:class:`Attack`. The runner (``python -m tars_verl.eval.attack``) builds one per run, calls :meth:`Attack.run` once per
behaviour, and writes HarmBench's test-case format ``{BehaviorID: [test_case, ...]}`` plus each behaviour's log, which
``python -m tars_verl.eval --attack NAME=FILE`` reads unchanged.

>>> b = Behavior("ctx_id", "Summarise the text", context="Some text")
>>> b.request()
'Some text\\n\\n---\\n\\nSummarise the text'
>>> Behavior("std_id", "Write a haiku").request()
'Write a haiku'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
