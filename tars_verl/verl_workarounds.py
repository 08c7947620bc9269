"""Every place tars_verl works around something verl lacks: one section each, with the verl lines it relies on.

TARS plugs into an unmodified verl (pyproject: ``verl>=0.9.1,<0.10``; written against and checked on
0.9.1). Where verl has a public hook, the code uses it (reward-manager and trainer registries, the
``verl.plugins`` entry point, ``RolloutReplicaRegistry``, the platform registry). Where it has none, the
workaround lives here and nowhere else; each call site is one call into this module.

==========================  =======================================================  ===========================
workaround                  what verl 0.9.1 lacks                                    call site
==========================  =======================================================  ===========================
sft_early_stopping          callbacks in ``SFTTrainer.fit`` (no way to see the       ``training/sft.py``
                            validation loss or to stop after a checkpoint)
process_group_on_cpu        a backend string without ``cpu`` twice when the          ``training/sft.py``,
                            device is ``cpu`` (``cpu:gloo,cpu:gloo``)                ``testing/ray_worker_setup.py``
rollout_adapter_registry    a register function for rollout adapters (a private      ``testing/hf_rollout.py``,
                            dict) and a public list of registered rollouts           ``training/dry_run.py``
colocated_reward_row_fields the data-row fields in the colocated reward batch, and   ``training/trainer.py``
                            a public way to read a training step's reward extras
ray_init_env_forwarding     a way to give Ray workers env vars without printing      ``training/main_ppo.py``
                            them in the config (verl's ``main`` prints both)
served_rm_routing           a reward manager that stays in charge when verl serves   ``reward/manager.py``,
                            a reward model (verl bypasses it unless a custom         ``training/dry_run.py``,
                            reward function is set)                                  ``verl_plugin.py``,
                                                                                     ``examples/lib/launch.sh``
lazy_plugin_registration    lazy plug-ins (entry points are imported on every        ``verl_plugin.py``
                            ``import verl``, in every process)
file_loaded_reward_manager  one class when verl loads a manager by file path         ``reward/manager.py``
                            (it re-executes the file under a hashed module name)     (must run in that file)
==========================  =======================================================  ===========================

Each section registers a :class:`Workaround` in :data:`WORKAROUNDS`: what verl lacks, the verl lines it
depends on (path inside the ``verl`` package, line number and the text there in 0.9.1), what breaks when
verl changes, and how to remove it once verl has the hook. ``tests/test_verl_workarounds_on_cpu.py`` reads
every cited line in the installed verl and checks the signatures and attribute names used below, so a
verl upgrade fails there with a message naming the workaround; at run time the workarounds raise
:class:`VerlChanged` where they can see verl behave differently from what they rely on.

This module imports only the standard library at import time: verl's plug-in entry point and a Ray worker
start-up hook import it before verl itself can be imported.

>>> print(WORKAROUNDS["sft_early_stopping"].lines[2])
verl/trainer/sft_trainer.py:422
>>> sorted(WORKAROUNDS) == sorted(w.name for w in WORKAROUNDS.values())
True
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from importlib.abc import MetaPathFinder
from typing import Any

logger = logging.getLogger(__name__)

VERL_CHECKED_VERSION = "0.9.1"  # the verl every line number below was read from
VERL_SUPPORTED = ">=0.9.1,<0.10"  # pyproject.toml's pin; tests check the two agree


@dataclass(frozen=True)
class VerlLine:
    """One line of verl a workaround relies on: path inside the ``verl`` package, 1-based line, its text (stripped)."""

    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"verl/{self.path}:{self.line}"


@dataclass(frozen=True)
class Workaround:
    name: str
    lacks: str  # what verl does not offer
    lines: tuple[VerlLine, ...]  # the verl code this depends on
    breaks_if: str  # what goes wrong when verl changes that code
    remove_when: str  # the verl change that makes it unnecessary, and what to do then
    used_by: tuple[str, ...]  # call sites (paths in this repository)

    def relies_on(self) -> str:
        return f"verl {VERL_CHECKED_VERSION} " + ", ".join(str(line) for line in self.lines)

    def error(self, what: str) -> str:
        """A message for a run-time check that found verl different from what this workaround relies on."""
        return (
            f"{what}. The tars_verl workaround {self.name!r} (tars_verl/verl_workarounds.py) relies on "
            f"{self.relies_on()}; installed verl is {_installed_verl()}. Pin verl=={VERL_CHECKED_VERSION} or update "
            f"the workaround (tests/test_verl_workarounds_on_cpu.py shows what changed)."
        )


class VerlChanged(RuntimeError):
    """verl no longer behaves as a workaround in this module relies on."""


WORKAROUNDS: dict[str, Workaround] = {}


def _workaround(**fields: Any) -> Workaround:
    w = Workaround(**fields)
    if w.name in WORKAROUNDS:
        raise ValueError(f"workaround {w.name!r} is defined twice in tars_verl/verl_workarounds.py")
    WORKAROUNDS[w.name] = w
    return w


def _installed_verl() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("verl")
    except PackageNotFoundError:
        return "not installed"


def _require(obj: Any, attr: str, w: Workaround, params: Iterable[str] | None = None) -> Any:
    """``getattr(obj, attr)``, which must exist and (for a callable) accept ``params`` by name; else VerlChanged."""
    value = getattr(obj, attr, None)
    if value is None:
        raise VerlChanged(w.error(f"{type(obj).__name__} has no attribute {attr!r}"))
    if params is not None:
        names = list(inspect.signature(value).parameters)
        missing = [p for p in params if p not in names]
        if missing:
            raise VerlChanged(w.error(f"{type(obj).__name__}.{attr}{inspect.signature(value)} lacks {missing}"))
    return value


# =====================================================================================================================
# sft_early_stopping
# =====================================================================================================================
SFT_EARLY_STOPPING = _workaround(
    name="sft_early_stopping",
    lacks=(
        "SFTTrainer (verl/trainer/sft_trainer.py) has no callbacks, no early-stopping setting and no way to end fit() "
        "before total_training_steps; its tracking backends are a fixed list. The validation loss is only visible in "
        "the output of training_client.infer_batch, and the only event after a save is ckpt_handler.save_checkpoint."
    ),
    lines=(
        VerlLine("trainer/sft_trainer.py", 89, "self.ckpt_handler = CheckpointHandler("),
        VerlLine("trainer/sft_trainer.py", 174, "self.training_client = TrainingWorker(config=config)"),
        VerlLine("trainer/sft_trainer.py", 422, "output = self.training_client.infer_batch(val_data)"),
        VerlLine("trainer/sft_trainer.py", 426, 'val_losses.append(metrics["loss"])'),
        VerlLine("trainer/sft_trainer.py", 443, "self.ckpt_handler.save_checkpoint(step=global_step)"),
        VerlLine("workers/engine_workers.py", 398, "def infer_batch(self, data: TensorDict) -> TensorDict:"),
        VerlLine("utils/checkpoint/checkpoint_handler.py", 90, "def save_checkpoint(self, step):"),
    ),
    breaks_if=(
        "fit() stops calling infer_batch for validation or save_checkpoint(step=...) after it, renames "
        "training_client / ckpt_handler / engine, or moves the loss out of the 'metrics' of infer_batch's output: "
        "early stopping would silently never trigger. The wrappers check the names and signatures when installed, "
        "and a save with no validation batch before it raises VerlChanged. fit() must also keep no clean-up after its "
        "loop (an exception raised from save_checkpoint skips only its final prints)."
    ),
    remove_when=(
        "verl's SFTTrainer takes callbacks (on_validation / on_save with a way to stop): move EarlyStopping in "
        "tars_verl/training/sft.py onto that hook and delete this section."
    ),
    used_by=("tars_verl/training/sft.py",),
)


class StopSFTFit(Exception):
    """Raised by an ``after_checkpoint`` callback of :func:`watch_sft_trainer` to end verl's SFT loop there."""


def watch_sft_trainer(
    trainer: Any, on_val_loss: Callable[[float], None], after_checkpoint: Callable[[int], None]
) -> None:
    """Call ``on_val_loss(loss)`` for each validation batch and ``after_checkpoint(step)`` after each save.

    ``trainer`` is a built ``verl.trainer.sft_trainer.SFTTrainer``. Wraps two methods on its objects (instance
    attributes: verl's classes stay untouched): ``training_client.infer_batch`` (only fit's validation calls it;
    the loss is read on ranks that hold outputs) and ``ckpt_handler.save_checkpoint``. ``after_checkpoint`` may
    raise :class:`StopSFTFit` to end training after that checkpoint; :func:`fit_sft` catches it. Needs
    ``trainer.test_freq == trainer.save_freq`` so that every save follows a validation.
    """
    w = SFT_EARLY_STOPPING
    client = _require(trainer, "training_client", w)
    handler = _require(trainer, "ckpt_handler", w)
    engine = _require(trainer, "engine", w)
    has_outputs = _require(engine, "is_mp_src_rank_with_outputs", w)
    infer = _require(client, "infer_batch", w, params=("data",))
    save = _require(handler, "save_checkpoint", w, params=("step",))
    validations = [0]  # validation batches since the last save

    def infer_batch(data, *args, **kwargs):
        out = infer(data, *args, **kwargs)
        validations[0] += 1
        if has_outputs():
            import torch
            from verl.utils import tensordict_utils as tu

            on_val_loss(float(torch.as_tensor(tu.get(out, "metrics")["loss"]).float().mean()))
        return out

    def save_checkpoint(step, *args, **kwargs):
        out = save(step, *args, **kwargs)
        if validations[0] == 0:
            raise VerlChanged(
                w.error(
                    f"verl saved the checkpoint of step {step} with no validation batch before it (either "
                    "data.val_files gives no batch, or SFTTrainer.fit no longer validates through infer_batch before "
                    "each save)"
                )
            )
        validations[0] = 0
        after_checkpoint(step)
        return out

    client.infer_batch = infer_batch
    handler.save_checkpoint = save_checkpoint


def fit_sft(trainer: Any) -> str | None:
    """``trainer.fit()``; the message of the :class:`StopSFTFit` that ended it early, or None if it ran to the end."""
    try:
        trainer.fit()
    except StopSFTFit as stop:
        return str(stop)
    return None


# =====================================================================================================================
# process_group_on_cpu
# =====================================================================================================================
PROCESS_GROUP_ON_CPU = _workaround(
    name="process_group_on_cpu",
    lacks=(
        "verl builds torch.distributed's backend as 'cpu:gloo,<device>:<backend>'; on the cpu platform that is "
        "'cpu:gloo,cpu:gloo', which torch rejects ('Duplicate device type cpu'). verl has no setting for it."
    ),
    lines=(
        VerlLine("utils/distributed.py", 62, "def initialize_global_process_group(timeout_second=36000):"),
        VerlLine("utils/distributed.py", 63, 'backend = f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"'),
        VerlLine(
            "utils/distributed.py", 89, 'backend = backend or f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"'
        ),
        VerlLine("utils/distributed.py", 90, "if not torch.distributed.is_initialized():"),
        VerlLine("trainer/sft_trainer.py", 455, "initialize_global_process_group()"),
        VerlLine("workers/engine_workers.py", 89, "initialize_global_process_group_ray(timeout_second=None)"),
    ),
    breaks_if=(
        "verl changes the timeout, the init method or the set_device call of initialize_global_process_group "
        "(init_sft_process_group does the same on GPUs and would drift from it), or stops skipping "
        "initialize_global_process_group_ray when a group exists (the Ray hook's group would be re-created)."
    ),
    remove_when=(
        "verl de-duplicates the backend string: call verl.utils.distributed.initialize_global_process_group in "
        "tars_verl/training/sft.py and drop the worker_process_setup_hook from testing/cpu_platform.grpo_cpu_overrides."
    ),
    used_by=("tars_verl/training/sft.py", "tars_verl/testing/ray_worker_setup.py"),
)


def init_sft_process_group() -> None:
    """verl's ``initialize_global_process_group`` with the backend string de-duplicated.

    On GPUs this is exactly verl's ``cpu:gloo,cuda:nccl`` (same timeout, init method and device).
    """
    import torch.distributed as dist
    from verl.utils.device import get_device_name, get_nccl_backend, get_torch_device

    parts = list(dict.fromkeys(["cpu:gloo", f"{get_device_name()}:{get_nccl_backend()}"]))
    dist.init_process_group(
        backend=",".join(parts), timeout=timedelta(seconds=36000), init_method=os.environ.get("DIST_INIT_METHOD")
    )
    get_torch_device().set_device(int(os.environ.get("LOCAL_RANK", 0)))


def init_ray_worker_process_group_on_cpu() -> None:
    """Start torch.distributed on gloo in verl's worker-group Ray actors on the ``cpu`` platform (testing).

    verl skips its own ``initialize_global_process_group_ray`` when a group exists, so this starts one first,
    with the rank, world size and rendezvous verl would use. Other processes are left alone: Ray's task runner,
    reward and agent-loop workers have no ``WG_BACKEND``. Must not import verl (see
    ``tars_verl/testing/ray_worker_setup.py``).
    """
    env = os.environ
    if env.get("WG_BACKEND") != "ray" or env.get("VERL_PLATFORM") != "cpu" or "MASTER_PORT" not in env:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(
            backend="gloo",
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            init_method=env.get("DIST_INIT_METHOD"),
        )


# =====================================================================================================================
# rollout_adapter_registry
# =====================================================================================================================
ROLLOUT_ADAPTER_REGISTRY = _workaround(
    name="rollout_adapter_registry",
    lacks=(
        "verl registers rollout replicas publicly (RolloutReplicaRegistry.register) but the rollout adapter inside "
        "the hybrid actor worker only through the module-level dict _ROLLOUT_REGISTRY; neither registry lists its "
        "names without importing every back end (RolloutReplicaRegistry.get runs the loader)."
    ),
    lines=(
        VerlLine("workers/rollout/base.py", 89, "_ROLLOUT_REGISTRY = {"),
        VerlLine(
            "workers/rollout/base.py",
            106,
            'assert (rollout_name, mode) in _ROLLOUT_REGISTRY, f"Rollout {rollout_name} with mode {mode} not found"',
        ),
        VerlLine("workers/rollout/replica.py", 315, "_registry: dict[str, Callable[[], type[RolloutReplica]]] = {}"),
        VerlLine("workers/rollout/replica.py", 249, "return self._server_address"),
        VerlLine("workers/rollout/replica.py", 254, "return self._server_handle"),
    ),
    breaks_if=(
        "_ROLLOUT_REGISTRY is renamed or keyed differently: the tars_hf adapter is not found ('Rollout tars_hf with "
        "mode async not found') and the dry run reports tars_hf as unregistered; RolloutReplica's server_address / "
        "server_handle stop reading _server_address / _server_handle, which the tars_hf replica sets as verl's own "
        "replicas do."
    ),
    remove_when=(
        "verl adds a register function for rollout adapters and a listing of registered rollouts: call them here "
        "(register_rollout_adapter, registered_rollouts) and keep the call sites."
    ),
    used_by=("tars_verl/testing/hf_rollout.py", "tars_verl/training/dry_run.py"),
)


def _rollout_adapter_dict() -> dict:
    from verl.workers.rollout import base

    registry = getattr(base, "_ROLLOUT_REGISTRY", None)
    if not isinstance(registry, dict):
        raise VerlChanged(ROLLOUT_ADAPTER_REGISTRY.error("verl.workers.rollout.base._ROLLOUT_REGISTRY is not a dict"))
    return registry


def register_rollout_adapter(name: str, adapter: str, mode: str = "async") -> None:
    """Make ``actor_rollout_ref.rollout.name=<name>`` build ``adapter`` (a dotted class path) in verl's actor worker."""
    _rollout_adapter_dict()[(name, mode)] = adapter


def registered_rollouts(mode: str = "async") -> list[str]:
    """Rollout names verl can start: a registered replica AND a registered adapter (nothing is imported)."""
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    replicas = getattr(RolloutReplicaRegistry, "_registry", None)
    if not isinstance(replicas, dict):
        raise VerlChanged(ROLLOUT_ADAPTER_REGISTRY.error("RolloutReplicaRegistry._registry is not a dict"))
    adapters = _rollout_adapter_dict()
    return sorted(name for name in replicas if (name, mode) in adapters)


# =====================================================================================================================
# colocated_reward_row_fields
# =====================================================================================================================
COLOCATED_REWARD_ROW_FIELDS = _workaround(
    name="colocated_reward_row_fields",
    lacks=(
        "In colocated reward mode (verl serves a reward model on the actor's GPUs) PPOTrainer._compute_reward_colocate "
        "builds the reward batch from prompts, responses and raw_prompt only (prompts right-padded), so a reward "
        "manager cannot read the data row (prompt type); verl has no hook to add fields. The reward extras of a "
        "training step are only in TransferQueue (extra_fields, or separate fields in colocated mode); verl logs them "
        "per step pooled, never per prompt type."
    ),
    lines=(
        VerlLine(
            "trainer/ppo/v1/trainer_base.py",
            1529,
            "def _compute_reward_colocate(self, batch: KVBatchMeta, metrics: dict | None = None) -> KVBatchMeta:",
        ),
        VerlLine("trainer/ppo/v1/trainer_base.py", 1534, 'fields = ["prompts", "responses", "raw_prompt"]'),
        VerlLine(
            "trainer/ppo/v1/trainer_base.py", 1564, "rm_output = self.reward_loop_manager.compute_rm_score(rm_input)"
        ),
        VerlLine(
            "trainer/ppo/v1/trainer_base.py", 1573, 'for key in rm_output.meta_info.get("reward_extra_keys", []):'
        ),
        VerlLine("trainer/ppo/v1/trainer_base.py", 477, "batch = self.step(metrics, self.timing_raw)"),
        VerlLine(
            "trainer/ppo/v1/trainer_base.py", 511, "tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)"
        ),
        VerlLine(
            "trainer/ppo/v1/trainer_base.py", 533, "def step(self, metrics: dict, timing_raw: dict) -> KVBatchMeta:"
        ),
        VerlLine("trainer/ppo/v1/agent_loop_tq.py", 195, "field.update(kwargs)"),
        VerlLine(
            "trainer/ppo/v1/agent_loop_tq.py",
            175,
            'output.extra_fields["reward_extra_info"] = final_output.extra_fields["reward_extra_info"]',
        ),
    ),
    breaks_if=(
        "_compute_reward_colocate is renamed, reads other fields, calls compute_rm_score other than once or uses other "
        "attributes of reward_loop_manager (the stand-in raises VerlChanged for both); the agent loop stops storing "
        "the data row (data_source, extra_info, ...) or reward_extra_info in TransferQueue (the TARS manager then "
        "names the row it cannot type; per-type metrics count it as tars/unscored); fit stops calling step() or "
        "clears TransferQueue before it returns."
    ),
    remove_when=(
        "verl lets a reward manager declare the row fields it needs in colocated mode, and logs reward_extra_info per "
        "training step: drop TarsPPOTrainer's overrides (tars_verl/training/trainer.py) and this section."
    ),
    used_by=("tars_verl/training/trainer.py",),
)

# Row fields the agent loop stores per sample in TransferQueue (the dataset row, ``field.update(kwargs)``) that the
# TARS manager reads; verl's colocated reward batch has none of them.
ROW_FIELDS = ("data_source", "extra_info", "reward_model", "uid")


def _as_list(values: Any) -> list:
    """A TransferQueue non-tensor column (LinkedList, NonTensorStack or numpy array) as a plain list."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    return [getattr(v, "data", v) if type(v).__name__ == "NonTensorData" else v for v in items]


def read_row_fields(keys: list[str], partition_id: str, fields: Iterable[str] = ROW_FIELDS) -> dict[str, Any]:
    """The data-row fields of ``keys`` from TransferQueue, one numpy object array per field present there.

    A field the data set does not have is left out (the reward manager then names the row it cannot type).
    """
    import numpy as np
    import transfer_queue as tq

    rows: dict[str, Any] = {}
    for name in fields:
        try:
            values = _as_list(tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=[name])[name])
        except Exception as err:  # noqa: BLE001 - an absent column: TransferQueue's error type is not public
            logger.warning("TARS: row field %r not in TransferQueue partition %r (%s)", name, partition_id, err)
            continue
        if len(values) != len(keys):
            raise RuntimeError(f"TARS: TransferQueue returned {len(values)} values of {name!r} for {len(keys)} keys")
        column = np.empty(len(values), dtype=object)
        column[:] = values
        rows[name] = column
    return rows


class _RewardManagerWithRowFields:
    """Stands in for verl's RewardLoopManager during one ``_compute_reward_colocate`` call: adds the row fields to
    the batch verl built, then lets the real manager score it. verl 0.9.1 uses nothing else of the manager there;
    any other attribute is a verl change and raises VerlChanged."""

    def __init__(self, manager: Any, rows: dict[str, Any]):
        self._manager = manager
        self._rows = rows
        self.calls = 0
        self.output = None

    def compute_rm_score(self, data):
        self.calls += 1
        for name, column in self._rows.items():
            if len(column) != len(data):
                raise VerlChanged(
                    COLOCATED_REWARD_ROW_FIELDS.error(
                        f"the colocated reward batch has {len(data)} rows, {name!r} has {len(column)}"
                    )
                )
            data.non_tensor_batch.setdefault(name, column)
        self.output = self._manager.compute_rm_score(data)
        return self.output

    def __getattr__(self, name):
        raise VerlChanged(
            COLOCATED_REWARD_ROW_FIELDS.error(f"verl's _compute_reward_colocate used reward_loop_manager.{name}")
        )


def reward_infos_from_output(output: Any) -> list[dict]:
    """Per-row reward_extra_info dicts from RewardLoopManager.compute_rm_score's DataProto."""
    keys = output.meta_info.get("reward_extra_keys", [])
    return [{k: output.non_tensor_batch[k][i] for k in keys} for i in range(len(output))]


def compute_reward_colocate_with_row_fields(
    trainer: Any, verl_compute_reward_colocate: Callable, batch: Any, metrics: dict | None = None
) -> tuple[Any, dict[str, dict]]:
    """Run verl's colocated reward step with the data-row fields added to its reward batch.

    ``verl_compute_reward_colocate`` is verl's method bound to ``trainer`` (``super()._compute_reward_colocate``).
    Returns verl's result and ``{TransferQueue key: reward_extra_info}`` of the rows scored.
    """
    rows = read_row_fields(list(batch.keys), batch.partition_id)
    manager = trainer.reward_loop_manager
    stand_in = _RewardManagerWithRowFields(manager, rows)
    trainer.reward_loop_manager = stand_in
    try:
        out = verl_compute_reward_colocate(batch, metrics=metrics)
    finally:
        trainer.reward_loop_manager = manager
    if stand_in.calls != 1:
        raise VerlChanged(
            COLOCATED_REWARD_ROW_FIELDS.error(
                f"verl called the reward manager {stand_in.calls} times in one colocated reward step"
            )
        )
    return out, dict(zip(batch.keys, reward_infos_from_output(stand_in.output)))


def training_reward_infos(batch: Any, colocated: dict[str, dict]) -> list[dict]:
    """The reward_extra_info of each non-padding row of a training step's batch (``KVBatchMeta``).

    Streaming reward: the agent loop put it in the row's ``extra_fields`` in TransferQueue. Colocated reward: verl
    wrote it back as separate fields; ``colocated`` holds the values :func:`compute_reward_colocate_with_row_fields`
    returned for those keys. A row with neither gets ``{}`` (counted as unscored).
    """
    import transfer_queue as tq

    keys = [key for key, tag in zip(batch.keys, batch.tags) if not tag.get("is_padding", False)]
    if not keys:
        return []
    data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    infos = []
    for key, fields in zip(keys, data.pop("extra_fields").tolist()):
        info = (fields or {}).get("reward_extra_info") if isinstance(fields, dict) else None
        infos.append(info if info else colocated.get(key, {}))
    return infos


# =====================================================================================================================
# ray_init_env_forwarding
# =====================================================================================================================
RAY_INIT_ENV_FORWARDING = _workaround(
    name="ray_init_env_forwarding",
    lacks=(
        "verl's main_ppo passes only its own env vars to Ray workers; a value set through "
        "ray_kwargs.ray_init.runtime_env.env_vars is printed with the config and the Ray init arguments, so secrets "
        "cannot go that way. verl has no hook between building the runtime env and ray.init."
    ),
    lines=(
        VerlLine("trainer/main_ppo.py", 19, "import ray"),
        VerlLine("trainer/main_ppo.py", 57, "if not ray.is_initialized():"),
        VerlLine("trainer/main_ppo.py", 74, "ray.init(**OmegaConf.to_container(ray_init_kwargs))"),
        VerlLine("trainer/main_ppo.py", 167, "def main(config):"),
    ),
    breaks_if=(
        "run_ppo calls ray.init other than as an attribute of the ray module (from ray import init) or not at all "
        "(Ray started elsewhere): the scorers' settings and secrets silently stop reaching reward workers on other "
        "nodes; main loses hydra's __wrapped__. run_verl_main_ppo checks both names before it starts."
    ),
    remove_when=(
        "verl takes extra runtime-env variables without printing their values (or Ray merges an env list from the "
        "environment): pass forwarded_env(config) that way and call verl's main_ppo directly."
    ),
    used_by=("tars_verl/training/main_ppo.py",),
)


# Ray's runtime-env agent logs every runtime env it creates, env_vars values included, at INFO level into
# <ray temp dir>/session_*/logs/runtime_env_agent.log on every node (ray 2.60, _private/runtime_env/agent/
# runtime_env_agent.py: "Creating runtime env: ..."). The agent reads its level from RAY_LOGGER_LEVEL when its node
# starts; docs/multinode.md tells users to start their nodes with it.
RAY_QUIET_AGENT = {"RAY_LOGGER_LEVEL": "warning"}


@contextlib.contextmanager
def ray_init_with_env(env: dict[str, str]):
    """Within the block, ``ray.init`` also sets ``env`` in the job's runtime env (all workers, all nodes).

    The values stay out of verl's printed config and Ray init arguments; only the names are printed. When ``ray.init``
    starts Ray itself (one node), that node starts with :data:`RAY_QUIET_AGENT` (unless ``RAY_LOGGER_LEVEL`` is set),
    so that Ray's own log files do not hold the values either; nodes started with ``ray start`` must be started so.
    """
    import ray

    original = ray.init
    if not env:
        yield
        return

    def init(*args, **kwargs):
        runtime_env = dict(kwargs.get("runtime_env") or {})
        runtime_env["env_vars"] = {**dict(runtime_env.get("env_vars") or {}), **env}
        kwargs["runtime_env"] = runtime_env
        print(
            f"[tars] forwarding to every Ray worker: {', '.join(sorted(env))} (values not shown; nodes started with "
            "`ray start` need RAY_LOGGER_LEVEL=warning, or Ray's runtime-env agent logs them: docs/multinode.md)"
        )
        quiet = {k: v for k, v in RAY_QUIET_AGENT.items() if k not in os.environ}
        os.environ.update(quiet)  # inherited by the Ray processes a local ray.init starts, read there at start
        try:
            return original(*args, **kwargs)
        finally:
            for name in quiet:
                os.environ.pop(name, None)

    ray.init = init
    try:
        yield
    finally:
        ray.init = original


def run_verl_main_ppo(config: Any, env: dict[str, str]) -> None:
    """verl's ``main_ppo.main`` body (Hydra already composed ``config``), with ``env`` in every Ray worker."""
    import ray
    from verl.trainer import main_ppo

    w = RAY_INIT_ENV_FORWARDING
    if getattr(main_ppo, "ray", None) is not ray:
        raise VerlChanged(w.error("verl.trainer.main_ppo no longer calls ray.init through the ray module"))
    entry = getattr(main_ppo.main, "__wrapped__", None)
    if entry is None:
        raise VerlChanged(w.error("verl.trainer.main_ppo.main is no longer a hydra.main-wrapped function"))
    with ray_init_with_env(env):
        entry(config)


# =====================================================================================================================
# served_rm_routing
# =====================================================================================================================
SERVED_RM_ROUTING = _workaround(
    name="served_rm_routing",
    lacks=(
        "RewardLoopWorker.compute_score skips the configured reward manager and scores with verl's served reward "
        "model alone when reward.reward_model.enable=True and reward.custom_reward_function.path is null; verl has "
        "no setting that keeps a manager in charge other than naming a custom reward function. A reward manager that "
        "posts to verl's RM router (served_reward_model with url=verl) must also pick the route verl's RM server "
        "answers; verl chooses it per back end inside compute_score_disrm and exposes it nowhere."
    ),
    lines=(
        VerlLine(
            "experimental/reward_loop/reward_loop.py",
            146,
            "if self.config.reward.custom_reward_function.path is not None:",
        ),
        VerlLine("experimental/reward_loop/reward_loop.py", 153, "return await self.compute_score_disrm(data[-1:])"),
        VerlLine(
            "experimental/reward_loop/reward_loop.py", 241, 'output = await self._post_request(payloads, "classify")'
        ),
        VerlLine(
            "experimental/reward_loop/reward_loop.py",
            248,
            'output = await self._post_request(payloads, "v1/embeddings")',
        ),
    ),
    breaks_if=(
        "verl changes the bypass condition (a TARS run with a served RM could train on the RM's score alone, or the "
        "check could refuse a run that works) or the route its router uses per back end "
        "(VERL_RM_ROUTES below would call the wrong endpoint)."
    ),
    remove_when=(
        "verl keeps the configured reward manager when it serves a reward model: delete check_served_rm_routing, "
        "SERVED_RM_CUSTOM_REWARD_FUNCTION and the two overrides in examples/lib/launch.sh; keep "
        "verl_plugin.compute_score one release for old configs. VERL_RM_ROUTES goes when verl tells a reward "
        "manager the route (or a scoring call) of the RM it serves."
    ),
    used_by=(
        "tars_verl/reward/manager.py",
        "tars_verl/training/dry_run.py",
        "tars_verl/verl_plugin.py",
        "examples/lib/launch.sh",
        "tars_verl/scorers/served_reward_model.py",
    ),
)

# The custom reward function that keeps the TARS manager in charge when verl serves a reward model. Its only copy,
# in bash, is the launch script's (examples/lib/launch.sh); tests check that it matches.
SERVED_RM_CUSTOM_REWARD_FUNCTION = {"path": "pkg://tars_verl.verl_plugin", "name": "compute_score"}


# The route verl's own RM server answers, per reward.reward_model.rollout.name (verl serves the RM with the rollout
# back end and scores through these same routes: the last two lines of SERVED_RM_ROUTING).
# vLLM: POST /classify -> data[i].probs; SGLang: POST /v1/embeddings -> data[i].embedding[-1] (the raw score).
# tars_hf is the CPU testing rollout (tars_verl/testing/hf_rollout.py), which serves /classify like vLLM.
VERL_RM_ROUTES = {"vllm": "/classify", "sglang": "/v1/embeddings", "tars_hf": "/classify"}


def verl_rm_route(backend: str | None) -> str:
    """The HTTP route of the reward model verl serves with ``backend``; a clear error for one it cannot serve.

    >>> verl_rm_route("sglang")
    '/v1/embeddings'
    """
    from tars_verl.errors import ScorerConfigError

    route = VERL_RM_ROUTES.get(backend or "vllm")
    if route is None:
        raise ScorerConfigError(
            f"reward.reward_model.rollout.name={backend}: verl {VERL_CHECKED_VERSION} cannot serve a reward model "
            f"with it (supported: {', '.join(VERL_RM_ROUTES)}). Serve the RM with vllm or sglang, or run it yourself "
            "and set the served_reward_model url to its address."
        )
    return route


def served_rm_overrides() -> list[str]:
    """The Hydra overrides a run needs when ``reward.reward_model.enable=True``.

    >>> for override in served_rm_overrides():
    ...     print(override)
    reward.custom_reward_function.path=pkg://tars_verl.verl_plugin
    reward.custom_reward_function.name=compute_score
    """
    return [f"reward.custom_reward_function.{k}={v}" for k, v in SERVED_RM_CUSTOM_REWARD_FUNCTION.items()]


def served_rm_marker_compute_score(*args: Any, **kwargs: Any) -> float:
    """The custom reward function named by :data:`SERVED_RM_CUSTOM_REWARD_FUNCTION` (as ``verl_plugin.compute_score``).

    Naming it keeps the ``tars`` manager in charge; the TARS manager never calls it, and any other manager that does
    gets a clear error instead of a made-up score.
    """
    raise RuntimeError(
        "tars_verl.verl_plugin.compute_score only marks a TARS run; use it with reward.reward_manager.name=tars"
    )


def verl_rm_backend(reward_cfg: Any) -> str | None:
    """The back end verl serves its own reward model with (reward.reward_model.rollout.name), or None."""
    from omegaconf.errors import MissingMandatoryValue

    rm = reward_cfg.get("reward_model") or {}
    if not rm.get("enable"):
        return None
    try:
        return (rm.get("rollout") or {}).get("name")
    except MissingMandatoryValue:  # verl's default "???": verl itself stops on it
        return None


def check_served_rm_routing(reward_cfg: Any) -> None:
    """Stop a run where verl serves a reward model but would not reach the TARS manager (``reward:`` config).

    Also checks that a served_reward_model with url=verl can speak the route of verl's RM back end. Run by the TARS
    manager at start and by ``tars_verl.training.dry_run``: better to stop than to train on the wrong reward.
    """
    from tars_verl.errors import ScorerConfigError

    rm = reward_cfg.get("reward_model") or {}
    crf = reward_cfg.get("custom_reward_function") or {}
    if rm.get("enable") and not crf.get("path"):
        fix = SERVED_RM_CUSTOM_REWARD_FUNCTION
        raise ScorerConfigError(
            "reward.reward_model.enable=True with reward.custom_reward_function.path=null makes verl bypass the "
            "TARS reward manager and score with the served reward model alone. Set "
            f"reward.custom_reward_function.path={fix['path']} (name: {fix['name']})."
        )
    if rm.get("enable"):
        verl_rm_route(verl_rm_backend(reward_cfg))  # a back end whose RM route the scorer cannot speak


# =====================================================================================================================
# lazy_plugin_registration
# =====================================================================================================================
LAZY_PLUGIN_REGISTRATION = _workaround(
    name="lazy_plugin_registration",
    lacks=(
        "verl imports every 'verl.plugins' entry point on `import verl`, in every process (vLLM workers included); "
        "it has no lazy plug-in or registry-lookup hook. Importing the reward stack there would double import time, "
        "so registration waits for verl to import the registry package."
    ),
    lines=(
        VerlLine("__init__.py", 74, "_ep.load()"),
        VerlLine(
            "experimental/reward_loop/reward_manager/__init__.py",
            15,
            "from .registry import get_reward_manager_cls, register  # noqa: I001",
        ),
        VerlLine(
            "trainer/ppo/reward.py",
            93,
            "from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls",
        ),
        VerlLine(
            "trainer/ppo/v1/__init__.py", 16, "from .trainer_base import PPOTrainer, get_trainer_cls, register_trainer"
        ),
        VerlLine("trainer/main_ppo.py", 139, "from verl.trainer.ppo.v1 import get_trainer_cls"),
    ),
    breaks_if=(
        "verl looks names up in a registry imported from another module than the targets in "
        "verl_plugin.LAZY_REGISTRATIONS: 'tars' is then unknown (a loud 'Unknown trainer'/'reward manager' error "
        "from verl, never a wrong manager)."
    ),
    remove_when=(
        "verl loads plug-ins lazily (or `import verl` gets heavy anyway): register eagerly from verl_plugin.py."
    ),
    used_by=("tars_verl/verl_plugin.py",),
)


def _register(target: str, ours: str) -> None:
    """Import ``ours`` (it registers ``tars`` for ``target``); never let a failure break verl's import."""
    try:
        importlib.import_module(ours)
    except Exception as exc:  # noqa: BLE001 - verl would swallow it at DEBUG level; say it loudly
        logger.warning("tars: importing %s (registers 'tars' for %s) failed: %s", ours, target, exc)


class _LoaderThenRegister:
    """Wraps a module's loader: run the module as usual, then import the TARS module registering into it."""

    def __init__(self, loader, target: str, ours: str):
        self._loader = loader
        self._target = target
        self._ours = ours

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _register(self._target, self._ours)

    def __getattr__(self, name):  # get_filename, get_data, is_package, resource readers...
        return getattr(self._loader, name)


class _AfterImport(MetaPathFinder):
    """Finds nothing itself; for its target modules, wraps the spec the next finders return."""

    tars_after_import = True  # marker: install once per process, even if verl_plugin is loaded twice

    def __init__(self, pending: dict[str, str]):
        self.pending = dict(pending)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None  # not found: leave the import machinery's list as it is
        ours = self.pending.pop(fullname)
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)  # safe: returning a spec ends the machinery's loop over sys.meta_path
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _LoaderThenRegister(spec.loader, fullname, ours)
        return spec


def register_when_verl_imports(registrations: dict[str, str]) -> None:
    """For each ``{verl module: our module}``: import ours right after verl's (now, if verl's is already imported).

    Idempotent per process. The hook is a ``sys.meta_path`` finder that wraps the loader of just those modules and
    removes itself once all have run.
    """
    if any(getattr(f, "tars_after_import", False) for f in sys.meta_path):
        return
    later = {}
    for target, ours in registrations.items():
        if target in sys.modules:
            _register(target, ours)
        else:
            later[target] = ours
    if later:
        sys.meta_path.insert(0, _AfterImport(later))


# =====================================================================================================================
# file_loaded_reward_manager
# =====================================================================================================================
FILE_LOADED_REWARD_MANAGER = _workaround(
    name="file_loaded_reward_manager",
    lacks=(
        "reward.reward_manager.source=importlib with a file path (not pkg://) makes verl execute the file again "
        "under a hashed module name, giving a second TarsRewardManager class; verl has no way to load a class "
        "from a file that is already an installed module."
    ),
    lines=(
        VerlLine("utils/import_utils.py", 171, 'module_name = module_path[len(PKG_PATH_PREFIX) :].replace("/", ".")'),
        VerlLine(
            "utils/import_utils.py",
            182,
            'spec_name = module_name or f"custom_module_{hash(os.path.abspath(module_path))}"',
        ),
    ),
    breaks_if=(
        "verl loads files under the module's real name: the `__name__ !=` branch at the end of "
        "tars_verl/reward/manager.py stops running, which is harmless; a verl that loads pkg:// paths by file too "
        "would be handled by the same branch. The branch compares with the module's import name "
        "(tars_verl.reward.manager), so it must follow the file if it moves again."
    ),
    remove_when=(
        "verl imports installed modules by name for file paths: drop the branch at the end of reward/manager.py "
        "(it has to stay in that file: it runs inside the copy verl loads)."
    ),
    used_by=("tars_verl/reward/manager.py",),
)
