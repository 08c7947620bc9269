"""Several searches (seeds x target checkpoints), one after the other or as Ray tasks on the user's cluster.

Every run writes its own ``<out>/<name>.json`` (and ``<name>.run/``), so the runs of a sweep into one ``--out`` merge
as the TARS authors' seven archives do: ``build_rl_mix.py --source rainbow_teaming=<out>`` reads every ``*.json``.

With Ray, each run is one task (``num_cpus`` each, no GPU: the models are behind their servers). The workers must
import ``tars_verl`` and see the API-key variables the runs name: on a multi-node cluster install the package on
every node (or ship it with a ``runtime_env``) and export the keys there; nothing here passes a key through Ray.
An already initialised Ray (``ray.init(...)`` by the caller) is used as it is and left running.
"""

from __future__ import annotations

import logging

from tars_verl.data.rainbow.search import RainbowConfig, RainbowError, RunSummary, run_rainbow

logger = logging.getLogger(__name__)


def _run_one(cfg: RainbowConfig) -> RunSummary:
    return run_rainbow(cfg)


def run_sweep(configs: list[RainbowConfig], ray_address: str | None = None, num_cpus: float = 1.0) -> list[RunSummary]:
    """Run every search; return their summaries in order. A failing run does not stop the others: once all are
    done, :class:`RainbowError` names each failed run and why.

    ``ray_address``: None runs them in this process, one after the other; ``"local"`` starts a private local Ray
    (``ray.init()``); ``"auto"`` or ``"HOST:PORT"`` joins an existing cluster. When Ray is already initialised it
    is used whatever ``ray_address`` says (other than None).
    """
    names = [c.run_name for c in configs]
    clashes = sorted({(c.out, c.run_name) for c in configs if names.count(c.run_name) > 1})
    if clashes:
        raise ValueError(f"two runs of the sweep would write the same archive: {clashes}; give each its own name")
    for cfg in configs:
        cfg.validate()
    results: dict[str, RunSummary] = {}
    failures: list[str] = []
    if ray_address is None:
        for cfg in configs:
            try:
                results[cfg.run_name] = run_rainbow(cfg)
            except Exception as err:  # noqa: BLE001 - reported with the others at the end
                logger.error("%s failed: %s", cfg.run_name, err)
                failures.append(f"{cfg.run_name}: {type(err).__name__}: {err}")
    else:
        import ray

        started = not ray.is_initialized()
        if started:
            ray.init(address=None if ray_address == "local" else ray_address, include_dashboard=False)
        try:
            task = ray.remote(num_cpus=num_cpus, num_gpus=0)(_run_one)
            refs = {cfg.run_name: task.remote(cfg) for cfg in configs}
            for name, ref in refs.items():
                try:
                    results[name] = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - a failed task: its error, whatever the type
                    cause = getattr(err, "cause", None) or err
                    failures.append(f"{name}: {type(cause).__name__}: {cause}")
        finally:
            if started:
                ray.shutdown()
    if failures:
        raise RainbowError(f"{len(failures)} of {len(configs)} run(s) failed:\n  " + "\n  ".join(failures))
    return [results[n] for n in names]
