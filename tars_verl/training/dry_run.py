"""Check a TARS launch before any GPU is spent: the examples' ``--dry-run``.

    python -m tars_verl.training.dry_run grpo [--config-name=NAME] <the same Hydra overrides the run gets>
    python -m tars_verl.training.dry_run sft   <the same Hydra overrides the run gets>

``grpo`` composes ``tars_grpo.yaml`` (or ``--config-name``'s config from ``tars_verl/config``, e.g. the launch
scripts' ``tars_grpo_recipe``) exactly as ``verl.trainer.main_ppo`` would, runs verl's own
``validate_config``, checks that the reward manager and trainer mode resolve to the TARS ones the way verl
resolves them (by name, without importing the reward manager or verl's reward loop), validates ``reward.tars`` (scorer
back ends, their keys, API keys in the environment, verl's served-RM routing), and checks that data
files exist and model paths exist locally or look like hub ids. It reads the data files: GRPO files
must be parquet / json / jsonl with a ``prompt`` column of chat messages and a prompt type on every
row (an SFT parquet, a CSV or a folder is a problem); SFT files must hold ``messages`` conversations.
``sft`` does the same for ``tars_sft.yaml`` with verl's SFT config classes. A bad override (a typo'd
key, an unknown preset) is one line in the list, and everything else is still checked. Nothing is
loaded onto a device. Set
``TARS_DRY_RUN_CHECK_ENDPOINTS=1`` to also call each served scorer's health check.
Exit code 0 and a summary when everything holds; otherwise a list of every problem found.
"""

from __future__ import annotations

import os
import re
import sys

from omegaconf import DictConfig, OmegaConf

from tars_verl.config import compose
from tars_verl.redaction import entry_point
from tars_verl.training.data_files import DATA_KEYS, check_rl_data, check_sft_data, missing_data_files

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def compose_reporting(config_name: str, overrides: list[str], problems: list[str]) -> DictConfig | None:
    """Compose like :func:`tars_verl.config.compose`; a bad override (a typo'd key, an unknown preset) becomes one
    short line in ``problems`` instead of a Hydra traceback, and the config is composed without it so that every
    other check still runs. None only when even that fails."""
    try:
        return compose(config_name, overrides)
    except Exception:  # noqa: BLE001 - find which overrides fail, report each, go on without them
        pass
    good: list[str] = []
    for override in overrides:
        try:
            compose(config_name, good + [override])
            good.append(override)
        except Exception as err:  # noqa: BLE001
            problems.append(f"override {override!r}: {_short_error(err)}")
    try:
        return compose(config_name, good)
    except Exception as err:  # noqa: BLE001
        problems.append(f"config {config_name}: {_short_error(err)}")
        return None


def _short_error(err: BaseException) -> str:
    """Hydra's message on one line, without the config search path listing."""
    text = str(err).split("Config search path")[0]
    if err.__cause__ is not None and str(err.__cause__).strip():  # e.g. "Key 'totl_epochs' is not in struct"
        text += f" ({str(err.__cause__).strip().splitlines()[0]})"
    text = re.sub(r"\s+", " ", text).strip()
    return text[:400] + ("..." if len(text) > 400 else "")


def check_model(name: str, path: str | None, problems: list[str]) -> None:
    if not path:
        problems.append(f"{name} is not set")
    elif not (os.path.exists(os.path.expanduser(path)) or HUB_ID.match(path)):
        problems.append(f"{name}: {path} is neither a local folder nor a hub id (org/name)")


def check_grpo(overrides: list[str], config_name: str = "tars_grpo") -> tuple[DictConfig | None, list[str]]:
    problems: list[str] = []
    cfg = compose_reporting(config_name, overrides, problems)
    if cfg is None:
        return None, problems
    try:
        from verl.trainer.ppo.utils import need_critic, need_reference_policy
        from verl.utils.config import validate_config

        validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    except Exception as err:  # noqa: BLE001 - every problem is reported together
        problems.append(f"verl validate_config: {type(err).__name__}: {err}")
    problems += check_plugins(cfg)
    problems += missing_data_files(cfg, "grpo")
    check_rl_data(cfg, DATA_KEYS, problems)
    check_model("actor_rollout_ref.model.path", cfg.actor_rollout_ref.model.path, problems)
    if cfg.reward.reward_model.enable:
        check_model("reward.reward_model.model_path", cfg.reward.reward_model.model_path, problems)
    problems += check_reward_manager(cfg)
    problems += check_reward(cfg)
    problems += check_gpu_and_cluster(cfg)
    return cfg, problems


def check_gpu_and_cluster(cfg: DictConfig) -> list[str]:
    """flash-attn, the per-GPU memory plan, sglang with a served RM, and multi-node reachability."""
    from tars_verl.training.gpu_plan import check_gpu_grpo
    from tars_verl.training.multinode import check_multinode

    try:
        return check_gpu_grpo(cfg) + check_multinode(cfg)
    except Exception as err:  # noqa: BLE001 - every problem is reported together
        return [f"GPU plan: {type(err).__name__}: {err}"]


def check_plugins(cfg: DictConfig) -> list[str]:
    """The rollout back end and the trainer mode must be registered in verl, or main_ppo fails on GPUs later."""
    problems: list[str] = []
    name = OmegaConf.select(cfg, "actor_rollout_ref.rollout.name")
    if name in (None, "???"):
        problems.append("actor_rollout_ref.rollout.name is not set (vllm or sglang)")
    else:
        from tars_verl.verl_workarounds import registered_rollouts

        known = registered_rollouts()
        if name not in known:
            problems.append(
                f"actor_rollout_ref.rollout.name={name!r} is not a registered rollout (known: {known}; "
                "tars_hf needs VERL_USE_EXTERNAL_MODULES=tars_verl.testing.hf_rollout)"
            )
    mode = OmegaConf.select(cfg, "trainer.v1.trainer_mode")
    if OmegaConf.select(cfg, "trainer.use_v1") and mode == "tars":
        problems += tars_plugin_problems("trainer.v1.trainer_mode=tars")
    elif OmegaConf.select(cfg, "trainer.use_v1") and mode:
        # Another mode: ask verl's registry (importing it imports verl's whole v1 trainer and reward loop).
        from verl.trainer.ppo.v1 import get_trainer_cls

        try:
            get_trainer_cls(mode)
        except ValueError as err:
            problems.append(f"trainer.v1.trainer_mode: {err}")
    return problems


def check_reward_manager(cfg: DictConfig) -> list[str]:
    """verl will build the TARS reward manager: checked from the names, the way
    ``verl.trainer.ppo.reward.resolve_reward_manager_cls`` resolves them, without importing the manager (and verl's
    reward loop with it): the dry run stays a driver-side check of settings and files."""
    manager = cfg.reward.reward_manager
    source, name = manager.get("source"), manager.get("name")
    if source == "register":
        if name != "tars":
            return [f"reward.reward_manager.name={name!r}: the TARS reward needs the 'tars' reward manager"]
        return tars_plugin_problems("reward.reward_manager.name=tars")
    if source == "importlib":
        path = OmegaConf.select(manager, "module.path") or ""
        if name != "TarsRewardManager" or not _is_tars_manager_path(path):
            return [
                f"reward.reward_manager (source=importlib): module.path={path!r} name={name!r} is not the TARS "
                "manager; use module.path=pkg://tars_verl.reward.manager name=TarsRewardManager, or source=register "
                "name=tars"
            ]
        return []
    return [f"reward.reward_manager.source={source!r} is unknown to verl (register or importlib)"]


def _is_tars_manager_path(path: str) -> bool:
    """``pkg://tars_verl.reward.manager`` (dots or slashes), or a path to that file (found without importing it)."""
    import importlib.util

    if path.startswith("pkg://"):
        return path[len("pkg://") :].replace("/", ".") == "tars_verl.reward.manager"
    path = path.removeprefix("file://")
    ours = importlib.util.find_spec("tars_verl.reward.manager").origin
    return bool(path) and os.path.exists(path) and os.path.samefile(path, ours)


def tars_plugin_problems(what: str) -> list[str]:
    """verl finds the ``tars`` names (reward manager, trainer mode) only when ``import verl`` loaded our
    ``verl.plugins`` entry point, which registers them as verl imports their registries (tars_verl/verl_plugin.py);
    main_ppo runs in the same environment as this check."""
    import verl  # noqa: F401 - loads the verl.plugins entry points, as main_ppo's own `import verl` does

    if "tars_verl.verl_plugin" in sys.modules:
        return []
    return [
        f"{what}: 'tars' is registered by tars-verl's verl.plugins entry point (tars_verl.verl_plugin), which "
        "`import verl` did not load here: install tars-verl (pip install -e .) and leave VERL_USE_EXTERNAL_PLUGINS "
        f"unset (it is {os.environ.get('VERL_USE_EXTERNAL_PLUGINS', 'auto')!r}), or set "
        "VERL_USE_EXTERNAL_MODULES=tars_verl.verl_plugin"
    ]


def check_reward(cfg: DictConfig) -> list[str]:
    from tars_verl.reward.config import tars_config_from
    from tars_verl.scorers import build_scorer, parse_scorer_config
    from tars_verl.verl_workarounds import check_served_rm_routing

    problems: list[str] = []
    try:
        tars = tars_config_from(cfg.reward.get("tars"))
        check_served_rm_routing(cfg.reward)
    except Exception as err:  # noqa: BLE001
        return [f"reward.tars: {err}"]
    for role in ("safety", "helpfulness"):
        if not tars.needs(role):
            continue
        scorer_cfg = getattr(tars, role)
        _, parsed = parse_scorer_config(scorer_cfg, where=f"reward.tars.{role}")
        model_path = getattr(parsed, "model_path", None)
        if model_path is not None:
            check_model(f"reward.tars.{role}.model_path", model_path, problems)
        if getattr(parsed, "url", None) == "verl" and not cfg.reward.reward_model.enable:
            problems.append(f"reward.tars.{role}.url=verl needs reward.reward_model.enable=True")
        if os.environ.get("TARS_DRY_RUN_CHECK_ENDPOINTS") == "1" and getattr(parsed, "url", "verl") != "verl":
            try:
                build_scorer(scorer_cfg, where=f"reward.tars.{role}").check_ready()
            except Exception as err:  # noqa: BLE001
                problems.append(f"reward.tars.{role}: {err}")
    return problems


def check_sft(overrides: list[str]) -> tuple[DictConfig | None, list[str]]:
    problems: list[str] = []
    cfg = compose_reporting("tars_sft", overrides, problems)
    if cfg is None:
        return None, problems
    try:
        from verl.utils.config import omega_conf_to_dataclass

        for key in ("model", "engine", "optim", "checkpoint"):
            omega_conf_to_dataclass(cfg[key])
    except Exception as err:  # noqa: BLE001
        problems.append(f"verl SFT config: {type(err).__name__}: {err}")
    from tars_verl.training.sft import config_problems

    try:  # what the SFT entry point stops on, in its words: missing data files, early-stopping settings
        problems += config_problems(cfg)
    except Exception as err:  # noqa: BLE001 - every problem is reported together
        problems.append(f"SFT config: {type(err).__name__}: {err}")
    check_sft_data(cfg, DATA_KEYS, problems)
    check_model("model.path", cfg.model.path, problems)
    from tars_verl.training.gpu_plan import check_gpu_sft

    problems += check_gpu_sft(cfg)
    return cfg, problems


@entry_point
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("grpo", "sft"):
        print(__doc__)
        return 2
    stage, overrides = argv[0], [a for a in argv[1:] if a != "--"]
    names = [a.split("=", 1)[1] for a in overrides if a.startswith("--config-name=")]
    overrides = [a for a in overrides if not a.startswith("--config-name=")]
    if stage == "grpo":
        cfg, problems = check_grpo(overrides, *names[-1:])
    elif names:
        print("[dry-run] sft: --config-name is for grpo (the SFT stage always composes tars_sft)")
        return 2
    else:
        cfg, problems = check_sft(overrides)
    if problems:
        print(f"[dry-run] {stage}: {len(problems)} problem(s):")
        from tars_verl.redaction import scrub

        for p in dict.fromkeys(problems):
            print(f"  - {scrub(p)}")  # overrides may hold URLs with passwords
        return 1
    if stage == "grpo":
        t = cfg.reward.tars
        print(
            f"[dry-run] grpo OK: model={cfg.actor_rollout_ref.model.path} train={cfg.data.train_files} "
            f"val={cfg.data.val_files} rollout={cfg.actor_rollout_ref.rollout.name} "
            f"n={cfg.actor_rollout_ref.rollout.n} "
            f"val_n={cfg.actor_rollout_ref.rollout.val_kwargs.n} "
            f"val_temperature={cfg.actor_rollout_ref.rollout.val_kwargs.temperature} "
            f"safety={t.safety.backend} helpfulness={t.helpfulness.backend} mode={t.mode} "
            f"gpus={cfg.trainer.nnodes}x{cfg.trainer.n_gpus_per_node}"
        )
    else:
        print(
            f"[dry-run] sft OK: model={cfg.model.path} train={cfg.data.train_files} val={cfg.data.val_files} "
            f"lr={cfg.optim.lr} epochs={cfg.trainer.total_epochs} batch={cfg.data.train_batch_size} "
            f"out={cfg.trainer.default_local_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
