"""Spread one attack over a Ray cluster: ``python -m tars_verl.eval.attack ... --ray [auto|ADDRESS]``.

White-box methods (GCG, AutoDAN) get one worker per GPU (``num_gpus=1`` each, or ``--gpus-per-worker 0.5`` for two
small models per GPU), each loading the model once and attacking one behaviour at a time; black-box methods (PAIR,
PAP) get ``--workers`` CPU workers, each attacking ``--concurrency`` behaviours at once. The driver does every
start-up check first (behaviours, targets, settings against the work folder), then starts the workers and waits until
every one is ready (``check_ready``: its model loads, its endpoints answer) before handing out any behaviour. Results
come back to the driver, which writes them as the single-process runner does (one file per behaviour, atomically),
so a run interrupted on a cluster resumes with or without Ray, and the work folder needs no shared file system.

320 behaviours x 500 GCG steps is a cluster job: ``--ray auto`` on a cluster of 8 nodes x 8 GPUs runs 64 behaviours
at a time (docs/attacks.md has the arithmetic).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Any

from tars_verl.data.files import exclusive_writer
from tars_verl.eval.attack.base import AttackResult, Behavior
from tars_verl.eval.attack.runner import (
    RunConfig,
    check_result,
    default_concurrency,
    finish,
    prepare,
    progress_bar,
    write_behavior,
)

logger = logging.getLogger(__name__)


class AttackWorker:
    """One process of the cluster holding one attack (and, for white-box methods, its model on this GPU)."""

    def __init__(self, method: str, model: str, options: dict[str, Any]):
        from tars_verl.eval.attack.runner import attack_class, build_attack

        self.attack = build_attack(attack_class(method), model, options)

    def ready(self) -> dict[str, Any]:
        import ray

        self.attack.check_ready()
        return {
            "node": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
        }

    async def run(self, behavior: dict[str, Any]) -> tuple[list[str], dict, float]:
        t0 = time.monotonic()
        result = await self.attack.run(Behavior(**behavior))
        return result.test_cases, result.log, time.monotonic() - t0

    async def close(self) -> None:
        await self.attack.aclose()


def worker_count(white_box: bool, workers: int | None, gpus_per_worker: float, cluster_gpus: float) -> int:
    """White box: every GPU of the cluster (``cluster_gpus / gpus_per_worker`` workers) unless ``workers`` says
    fewer; black box: ``workers`` (default 1).

    >>> worker_count(True, None, 1.0, 16.0), worker_count(True, None, 0.5, 2.0), worker_count(False, 4, 1.0, 0.0)
    (16, 4, 4)
    """
    if not white_box:
        return workers or 1
    if gpus_per_worker <= 0:
        raise ValueError(f"--gpus-per-worker must be > 0 for a white-box method, got {gpus_per_worker}")
    fit = int(cluster_gpus / gpus_per_worker + 1e-9)
    if fit < 1:
        raise ValueError(
            f"the Ray cluster has {cluster_gpus:g} GPU(s); a white-box attack needs {gpus_per_worker:g} per worker"
        )
    return min(workers, fit) if workers else fit


def run_attack_on_ray(
    cfg: RunConfig,
    address: str | None = "auto",
    workers: int | None = None,
    gpus_per_worker: float = 1.0,
    cpus_per_worker: float = 1.0,
    ray_init: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Like :func:`~tars_verl.eval.attack.runner.run_attack`, with the behaviours of ``cfg`` (and its shard)
    spread over Ray workers. Connects to ``address`` unless Ray is already initialised in this process."""
    import ray

    started = time.monotonic()
    p = prepare(cfg)
    if cfg.dry_run:
        return _run(p, cfg, ray, address, workers, gpus_per_worker, cpus_per_worker, ray_init, started)
    with exclusive_writer(os.path.join(p.work, f"shard-{cfg.shard[0]}-of-{cfg.shard[1]}")):
        return _run(p, cfg, ray, address, workers, gpus_per_worker, cpus_per_worker, ray_init, started)


def _run(p, cfg, ray, address, workers, gpus_per_worker, cpus_per_worker, ray_init, started) -> dict[str, Any]:
    if not ray.is_initialized():
        ray.init(address=address, **(ray_init or {}))
    white = p.cls.white_box
    n = worker_count(white, workers, gpus_per_worker, ray.cluster_resources().get("GPU", 0.0))
    per_worker = 1 if white else (cfg.concurrency or default_concurrency(p.cls))
    remote = ray.remote(AttackWorker).options(
        num_gpus=gpus_per_worker if white else 0, num_cpus=cpus_per_worker, max_concurrency=max(2, per_worker + 1)
    )
    actors = [remote.remote(cfg.method, cfg.model, cfg.options) for _ in range(n)]
    try:
        infos = []
        for k, ref in enumerate([a.ready.remote() for a in actors]):
            try:
                infos.append(ray.get(ref))
            except ray.exceptions.RayError as err:
                raise RuntimeError(f"attack worker {k} of {n} is not ready: {err}") from err
        logger.info("%s: %d worker(s) ready: %s", p.record["method"], n, infos)
        if cfg.dry_run:
            return {"method": p.record["method"], "dry_run": True, "todo": len(p.todo), "workers": infos}
        bar = progress_bar(len(p.todo), p.record["method"], cfg.progress)
        try:
            failures = asyncio.run(_dispatch(p, actors, per_worker, bar)) if p.todo else {}
        finally:
            bar.close()
        summary = finish(p, failures, started)
        summary["workers"] = infos
        return summary
    finally:
        for a in actors:
            try:
                ray.get(a.close.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - best effort; the actor is killed next
                pass
            ray.kill(a)


async def _dispatch(p, actors, per_worker: int, bar) -> dict[str, str]:
    queue: asyncio.Queue = asyncio.Queue()
    for b in p.todo:
        queue.put_nowait(b)
    failures: dict[str, str] = {}

    async def consume(actor) -> None:
        while True:
            try:
                b = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                cases, log, elapsed = await actor.run.remote(dataclasses.asdict(b))
                result = AttackResult(cases, log)
                check_result(b.behavior_id, result)
                write_behavior(p.work, p.record["run_key"], b, result, elapsed)
            except Exception as err:  # noqa: BLE001 - one behaviour's failure must not stop the others
                failures[b.behavior_id] = f"{type(err).__name__}: {err}"
                logger.error("%s %s failed: %s", p.record["method"], b.behavior_id, failures[b.behavior_id])
            bar.update(1)

    await asyncio.gather(*(consume(a) for a in actors for _ in range(per_worker)))
    return failures
