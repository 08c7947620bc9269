"""Run one attack method over HarmBench behaviours: resumable, shardable, and (``ray.py``) spread over a cluster.

``run_attack(RunConfig(method="pair", model=..., behaviors="harmbench_behaviors_text_all.csv",
out="cases/pair.json", options={...}))`` does, in this order, before any behaviour is attacked:

1. reads the behaviours file (errors name the file, column and rows) and, for methods that need them, the
   optimizer targets (a behaviour without one is an error naming its BehaviorID);
2. builds the method (``cls(model, **options)``) and compares its settings with the run already in the work folder
   (``cases/pair/run.json``): a change is refused, naming what changed (``restart=True`` sets the old folder aside);
3. checks that the method is ready (``Attack.check_ready``: endpoints answer, models load).

Then each behaviour's result is written atomically to ``cases/pair/behaviors/<BehaviorID>.json`` as soon as it is
done: a rerun skips the behaviours done with the same settings and the same behaviour text, ``shard=(i, n)`` takes
every n-th behaviour from the i-th (0-based) so that n processes can share one work folder, and when every behaviour
of the file is done the runner writes HarmBench's test-case file ``cases/pair.json`` (``{BehaviorID: [test case,
...]}``, what ``python -m tars_verl.eval --attack pair=cases/pair.json`` reads), the logs ``cases/pair.logs.json``
(``{BehaviorID: log}``: steps, losses or judge scores, time) and ``cases/pair.meta.json`` (method, settings, the
model attacked: what the report uses to tell adaptive attacks from transferred ones) together.

A failing behaviour is logged with its BehaviorID and the others go on; the run then raises
:class:`AttackRunError` listing the failures (running the same command again retries them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import json
import logging
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from tars_verl.data.files import exclusive_writer, write_json_atomic, write_together
from tars_verl.eval.attack.base import ATTACKS, Attack, AttackResult, Behavior
from tars_verl.eval.attack.behaviors import load_behaviors, load_targets, with_targets
from tars_verl.eval.attack.chat import is_endpoint

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
BEHAVIORS_DIR = "behaviors"


class AttackRunError(RuntimeError):
    """Some behaviours failed; ``failures``: {BehaviorID: error}."""

    def __init__(self, message: str, failures: dict[str, str]):
        super().__init__(message)
        self.failures = failures


class SettingsChangedError(ValueError):
    pass


@dataclass
class RunConfig:
    method: str  # a name of ATTACKS, or "package.module:Class" for a method of your own
    model: str  # the model under test: local folder, hub id or endpoint URL ("" for pap)
    behaviors: str  # HarmBench behaviours file
    out: str  # HarmBench test-case JSON to write (cases/gcg.json); its work folder is cases/gcg/
    options: dict[str, Any] = field(default_factory=dict)
    targets: str | None = None  # optimizer targets JSON (file or URL); None: HarmBench's
    cache_dir: str | None = None
    shard: tuple[int, int] = (0, 1)
    concurrency: int | None = None  # behaviours at once in this process (None: 1 for white box, 8 for black box)
    limit: int | None = None  # the first N behaviours of the file (quick checks)
    behavior_ids: list[str] | None = None  # only these behaviours
    restart: bool = False  # set a work folder made with other settings aside and start anew
    progress: bool = True
    dry_run: bool = False  # every start-up check, then stop

    def validate(self) -> None:
        if not self.out.endswith(".json"):
            raise ValueError(f"--out {self.out}: give the test-case file to write, ending in .json (cases/gcg.json)")
        i, n = self.shard
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"--shard {i}/{n}: need 0 <= i < n (shards are counted from 0)")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n); shards are counted from 0.

    >>> parse_shard("1/4")
    (1, 4)
    """
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/4 (shards counted from 0)") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n (shards are counted from 0)")
    return i, n


def attack_class(method: str) -> type[Attack]:
    """The class of a method name (:data:`ATTACKS`) or of a ``module:Class`` spec."""
    spec = ATTACKS.get(method, method if ":" in method else None)
    if spec is None:
        raise ValueError(f"unknown attack method {method!r}; known: {sorted(ATTACKS)} (or give module:Class)")
    module, _, name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as err:
        raise ImportError(f"attack method {method!r}: cannot import {module} ({err})") from err
    except AttributeError:
        raise ValueError(f"attack method {method!r}: {module} has no {name}") from None
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise ValueError(f"attack method {method!r}: {spec} is not an Attack subclass")
    return cls


def build_attack(cls: type[Attack], model: str, options: dict[str, Any]) -> Attack:
    """``cls(model, **options)``; for a class with a settings dataclass ``Config`` (GCG, AutoDAN), the options that
    are its fields build it (``cls(model, config=Config(...), **other options)``)."""
    name = cls.name or cls.__name__
    config_cls = getattr(cls, "Config", None)
    try:
        if dataclasses.is_dataclass(config_cls):
            known = {f.name for f in dataclasses.fields(config_cls)}
            config = config_cls(**{k: v for k, v in options.items() if k in known})
            return cls(model, config=config, **{k: v for k, v in options.items() if k not in known})
        return cls(model, **options)
    except TypeError as err:
        raise ValueError(f"attack {name}: bad options {sorted(options)}: {err}") from err


def work_dir(out: str) -> str:
    return out[: -len(".json")]


def sidecar(out: str, kind: str) -> str:
    """``cases/gcg.json`` -> ``cases/gcg.<kind>.json`` (logs, meta)."""
    return f"{work_dir(out)}.{kind}.json"


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:24]


def behavior_sha(b: Behavior) -> str:
    """Identity of what a behaviour's attack is made from (text, context, target)."""
    return _sha(dataclasses.asdict(b))


def behavior_file(work: str, behavior_id: str) -> str:
    name = urllib.parse.quote(behavior_id, safe="-_")
    return os.path.join(work, BEHAVIORS_DIR, f"{name}.json")


def model_identity(model: str) -> dict[str, Any]:
    """What identifies the model under test in a run's settings: a local folder's files, a hub commit; an endpoint
    is identified by the method's own settings (its served model name), not by its URL."""
    if not model:
        return {"kind": "none"}
    if is_endpoint(model):
        return {"kind": "endpoint"}
    from tars_verl.eval.generate import model_fingerprint

    return model_fingerprint(model, "hf")


def _changed(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _changed(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def check_run_record(work: str, record: dict, restart: bool, write: bool = True) -> None:
    """Refuse a work folder made with other settings (or set it aside with ``restart``); write ours."""
    path = os.path.join(work, RUN_FILE)
    if os.path.exists(path):
        with open(path) as f:
            try:
                old = json.load(f)
            except ValueError as err:
                raise ValueError(f"{path}: not valid JSON ({err}); remove the folder or pass --restart") from err
        if old.get("run_key") != record["run_key"]:
            changed = _changed(
                {k: old.get(k) for k in ("method", "model", "settings")},
                {k: record[k] for k in ("method", "model", "settings")},
            )
            if not restart:
                done = (
                    len(os.listdir(os.path.join(work, BEHAVIORS_DIR)))
                    if os.path.isdir(os.path.join(work, BEHAVIORS_DIR))
                    else 0
                )
                raise SettingsChangedError(
                    f"{work}: {done} behaviour(s) were attacked with other settings (changed: "
                    f"{', '.join(changed) or 'unknown'}). Refusing to mix them: pass --restart to set that folder "
                    f"aside and start anew, or write to another --out."
                )
            if not write:
                return
            aside = f"{work}.stale-{time.strftime('%Y%m%d-%H%M%S')}"
            os.replace(work, aside)
            logger.warning("%s: settings changed (%s); the old folder is now %s", work, ", ".join(changed), aside)
    if write:
        os.makedirs(os.path.join(work, BEHAVIORS_DIR), exist_ok=True)
        write_json_atomic(record, path)


def read_done(work: str, behaviors: list[Behavior], run_key: str) -> dict[str, dict]:
    """The behaviours already attacked with ``run_key`` and their current text: {BehaviorID: record}."""
    done = {}
    for b in behaviors:
        path = behavior_file(work, b.behavior_id)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            try:
                rec = json.load(f)
            except ValueError as err:
                raise ValueError(f"{path}: not valid JSON ({err}); remove it to attack that behaviour again") from err
        if rec.get("run_key") != run_key:
            logger.warning("%s: made with other settings; attacking %s again", path, b.behavior_id)
        elif rec.get("behavior_sha") != behavior_sha(b):
            logger.warning("%s: the behaviour's text, context or target changed; attacking it again", b.behavior_id)
        else:
            done[b.behavior_id] = rec
    return done


def check_result(behavior_id: str, result: AttackResult) -> None:
    cases = result.test_cases
    if not isinstance(cases, list) or not cases or not all(isinstance(c, str) and c.strip() for c in cases):
        raise ValueError(f"{behavior_id}: the attack returned {cases!r:.200}, not a non-empty list of test cases")
    try:
        json.dumps(result.log)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{behavior_id}: the attack's log is not JSON-serialisable ({err})") from err


@dataclass
class Prepared:
    cfg: RunConfig
    cls: type[Attack]
    attack: Attack
    behaviors: list[Behavior]  # every behaviour selected (all shards)
    todo: list[Behavior]  # this shard's, not done yet
    done: dict[str, dict]
    work: str
    record: dict


def select(behaviors: list[Behavior], cfg: RunConfig) -> list[Behavior]:
    if cfg.behavior_ids:
        known = {b.behavior_id for b in behaviors}
        missing = [i for i in cfg.behavior_ids if i not in known]
        if missing:
            raise ValueError(f"{cfg.behaviors}: no BehaviorID(s) {missing[:10]}")
        wanted = set(cfg.behavior_ids)
        behaviors = [b for b in behaviors if b.behavior_id in wanted]
    return behaviors[: cfg.limit] if cfg.limit else behaviors


def prepare(cfg: RunConfig, build: bool = True) -> Prepared:
    """Every start-up check, in the order of the module docstring; returns what a run needs."""
    cfg.validate()
    behaviors = select(load_behaviors(cfg.behaviors), cfg)
    cls = attack_class(cfg.method)
    if cls.needs_target_string:
        targets, where = load_targets(cfg.targets, cfg.cache_dir)
        behaviors = with_targets(behaviors, targets, where)
    if cls.adaptive and not cfg.model:
        raise ValueError(f"{cfg.method}: give the model under test (--model PATH_OR_URL)")
    attack = build_attack(cls, cfg.model, cfg.options)
    record = {
        "method": cls.name or cfg.method,
        "method_class": f"{cls.__module__}:{cls.__name__}",
        "model": model_identity(cfg.model) if cls.adaptive else {"kind": "none"},
        "settings": attack.settings(),
    }
    json.dumps(record)  # settings must be JSON (the contract); fail here, not after the first behaviour
    record["run_key"] = _sha({k: record[k] for k in ("method", "model", "settings")})
    record["model_arg"] = cfg.model
    if is_endpoint(cfg.model):  # never write a URL's password or secret query values
        from tars_verl.scorers.http_client import redact_url

        record["model_arg"] = redact_url(cfg.model)
    work = work_dir(cfg.out)
    check_run_record(work, record, cfg.restart, write=not cfg.dry_run)
    done = read_done(work, behaviors, record["run_key"])
    i, n = cfg.shard
    todo = [b for k, b in enumerate(behaviors) if k % n == i and b.behavior_id not in done]
    return Prepared(cfg, cls, attack, behaviors, todo, done, work, record)


def write_behavior(work: str, run_key: str, b: Behavior, result: AttackResult, elapsed: float) -> dict:
    rec = {
        "behavior_id": b.behavior_id,
        "behavior_sha": behavior_sha(b),
        "run_key": run_key,
        "test_cases": list(result.test_cases),
        "log": {"time_s": round(elapsed, 3), **result.log},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(rec, behavior_file(work, b.behavior_id))
    return rec


def merge(p: Prepared) -> bool:
    """Write the test-case file, its logs and meta when every selected behaviour is done; returns whether it did."""
    done = read_done(p.work, p.behaviors, p.record["run_key"])
    missing = [b.behavior_id for b in p.behaviors if b.behavior_id not in done]
    if missing:
        logger.info(
            "%s: %d of %d behaviours done; %s is written when all are", p.work, len(done), len(p.behaviors), p.cfg.out
        )
        return False
    order = [b.behavior_id for b in p.behaviors]
    meta = {
        "kind": "generated",
        "method": p.record["method"],
        "adaptive": bool(p.cls.adaptive),
        "model": p.record["model"],
        "model_arg": p.record["model_arg"],
        "settings": p.record["settings"],
        "behaviors": len(order),
        "behaviors_file": os.path.abspath(p.cfg.behaviors),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_together(
        {
            p.cfg.out: {bid: done[bid]["test_cases"] for bid in order},
            sidecar(p.cfg.out, "logs"): {bid: done[bid]["log"] for bid in order},
            sidecar(p.cfg.out, "meta"): meta,
        }
    )
    return True


def default_concurrency(cls: type[Attack]) -> int:
    return 1 if cls.white_box else 8


async def _run_local(p: Prepared, bar) -> dict[str, str]:
    """Attack ``p.todo`` in this process, ``concurrency`` behaviours at once; returns the failures."""
    concurrency = p.cfg.concurrency or default_concurrency(p.cls)
    sem = asyncio.Semaphore(concurrency)
    failures: dict[str, str] = {}

    async def one(b: Behavior) -> None:
        async with sem:
            shown = 0.0

            def progress(step: int, total: int) -> None:
                nonlocal shown
                frac = min(1.0, max(0.0, step / total)) if total else 0.0
                if frac > shown:
                    bar.update(frac - shown)
                    shown = frac

            t0 = time.monotonic()
            try:
                result = await p.attack.run(b, progress)
                check_result(b.behavior_id, result)
                write_behavior(p.work, p.record["run_key"], b, result, time.monotonic() - t0)
            except Exception as err:  # noqa: BLE001 - one behaviour's failure must not stop the others
                failures[b.behavior_id] = f"{type(err).__name__}: {err}"
                logger.error("%s %s failed: %s", p.record["method"], b.behavior_id, failures[b.behavior_id])
            bar.update(1.0 - shown)

    try:
        await asyncio.gather(*(one(b) for b in p.todo))
    finally:
        await p.attack.aclose()
    return failures


def progress_bar(total: int, desc: str, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="behavior",
        disable=None if enabled else True,
        bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}, {rate_fmt}]",
    )


def finish(p: Prepared, failures: dict[str, str], started: float) -> dict[str, Any]:
    merged = merge(p)
    summary = {
        "method": p.record["method"],
        "out": p.cfg.out if merged else None,
        "work_dir": p.work,
        "attacked": len(p.todo) - len(failures),
        "skipped_done": len(p.done),
        "failed": failures,
        "seconds": round(time.monotonic() - started, 1),
    }
    if failures:
        shown = "; ".join(f"{k}: {v[:300]}" for k, v in list(failures.items())[:5])
        raise AttackRunError(
            f"{p.record['method']}: {len(failures)} of {len(p.todo)} behaviour(s) failed ({shown}). The others are "
            f"saved in {p.work}; run the same command again to retry the failed ones.",
            failures,
        )
    return summary


def run_attack(cfg: RunConfig) -> dict[str, Any]:
    """Run (or resume) one method over the behaviours of ``cfg``; returns a summary (see module docstring)."""
    started = time.monotonic()
    p = prepare(cfg)
    if cfg.dry_run:
        p.attack.check_ready()
        asyncio.run(p.attack.aclose())
        return {"method": p.record["method"], "dry_run": True, "todo": len(p.todo), "done": len(p.done)}
    with exclusive_writer(os.path.join(p.work, f"shard-{cfg.shard[0]}-of-{cfg.shard[1]}")):
        p.attack.check_ready()
        logger.info(
            "%s: %d behaviour(s) to attack in shard %d/%d (%d already done) -> %s",
            p.record["method"],
            len(p.todo),
            *cfg.shard,
            len(p.done),
            p.work,
        )
        bar = progress_bar(len(p.todo), p.record["method"], cfg.progress)
        try:
            failures = asyncio.run(_run_local(p, bar)) if p.todo else {}
        finally:
            bar.close()
        return finish(p, failures, started)
