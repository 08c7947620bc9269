"""Check a TARS launch before any GPU is spent: the examples' ``--dry-run``.

    python -m tars_verl.training.dry_run grpo  <the same Hydra overrides the run gets>
    python -m tars_verl.training.dry_run sft   <the same Hydra overrides the run gets>

``grpo`` composes ``tars_grpo.yaml`` exactly as ``verl.trainer.main_ppo`` would, runs verl's own
``validate_config``, resolves the reward manager the way verl does, validates ``reward.tars`` (scorer
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

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module(config_module="tars_verl.config", version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def compose_reporting(config_name: str, overrides: list[str], problems: list[str]) -> DictConfig | None:
    """Compose like ``_compose``; a bad override (a typo'd key, an unknown preset) becomes one short line in
    ``problems`` instead of a Hydra traceback, and the config is composed without it so that every other
    check still runs. None only when even that fails."""
    try:
        return _compose(config_name, overrides)
    except Exception:  # noqa: BLE001 - find which overrides fail, report each, go on without them
        pass
    good: list[str] = []
    for override in overrides:
        try:
            _compose(config_name, good + [override])
            good.append(override)
        except Exception as err:  # noqa: BLE001
            problems.append(f"override {override!r}: {_short_error(err)}")
    try:
        return _compose(config_name, good)
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


def check_rl_data(cfg: DictConfig, keys: list[str], problems: list[str]) -> dict[str, dict[str, int]]:
    """The files verl's RLHFDataset will read hold a TARS RL mix: format, prompt column of chat messages, and a
    prompt type on every row. Returns the prompt-type counts per file."""
    from tars_verl.reward.manager import PromptTypeError, resolve_prompt_type

    prompt_key = OmegaConf.select(cfg, "data.prompt_key") or "prompt"
    type_key = OmegaConf.select(cfg, "reward.tars.prompt_type_key") or "prompt_type"
    counts: dict[str, dict[str, int]] = {}
    for key in keys:
        for path in _files(OmegaConf.select(cfg, key)):
            path = os.path.expanduser(path)
            if not os.path.exists(path):
                continue  # check_data reports it
            found = _check_rl_file(key, path, prompt_key, type_key, problems, resolve_prompt_type, PromptTypeError)
            if found is not None:
                counts[path] = found
    return counts


def _check_rl_file(key, path, prompt_key, type_key, problems, resolve_prompt_type, PromptTypeError):
    from tars_verl.data.io import read_table

    where = f"{key}: {path}"
    if os.path.isdir(path):
        problems.append(
            f"{where} is a folder; verl needs the file(s) themselves, e.g. train.parquet from data_prep/build_rl_mix.py"
        )
        return None
    if not path.endswith((".parquet", ".json", ".jsonl")):
        problems.append(
            f"{where}: verl's RL dataset reads .parquet, .json or .jsonl only; build the RL data with "
            "data_prep/build_rl_mix.py"
        )
        return None
    try:
        df = read_table(path)
    except Exception as err:  # noqa: BLE001
        problems.append(f"{key}: {err}")
        return None
    if prompt_key not in df.columns:
        hint = (
            " It looks like an SFT file (a 'messages' column): GRPO needs the RL mix from data_prep/build_rl_mix.py."
            if "messages" in df.columns
            else ""
        )
        problems.append(f"{where}: no '{prompt_key}' column (data.prompt_key); it has {list(df.columns)}.{hint}")
        return None
    if df.empty:
        problems.append(f"{where}: no rows")
        return None
    bad_shape, bad_type, types = [], [], {}
    for i, row in enumerate(df.to_dict("records")):
        if not _is_chat(row[prompt_key]):
            bad_shape.append(i)
            continue
        try:
            t = resolve_prompt_type(row, type_key)
            types[t] = types.get(t, 0) + 1
        except PromptTypeError as err:
            bad_type.append(str(err))
    if bad_shape:
        problems.append(
            f"{where}: column '{prompt_key}' must hold chat messages (a list of {{role, content}} with a "
            f"user turn); {len(bad_shape)} row(s) do not, e.g. rows {bad_shape[:5]}"
        )
    if bad_type:
        problems.append(f"{where}: {len(bad_type)} row(s) without a usable prompt type, e.g. {bad_type[0]}")
    return types


def _is_chat(prompt) -> bool:
    if isinstance(prompt, str) or not hasattr(prompt, "__iter__"):
        return False
    turns = list(prompt)
    ok = all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in turns
    )
    return ok and any(m["role"] == "user" for m in turns)


def check_sft_data(cfg: DictConfig, keys: list[str], problems: list[str]) -> None:
    """The SFT files hold chat conversations in ``data.messages_key`` with an assistant turn."""
    from tars_verl.data.io import read_table

    messages_key = OmegaConf.select(cfg, "data.messages_key") or "messages"
    for key in keys:
        for path in _files(OmegaConf.select(cfg, key)):
            path = os.path.expanduser(path)
            if not os.path.exists(path):
                continue
            where = f"{key}: {path}"
            if os.path.isdir(path) or not path.endswith(".parquet"):
                problems.append(f"{where}: give a .parquet file (sft_train.parquet from data_prep/build_sft_traces.py)")
                continue
            try:
                df = read_table(path)
            except Exception as err:  # noqa: BLE001
                problems.append(f"{key}: {err}")
                continue
            if messages_key not in df.columns:
                hint = " It looks like an RL mix (a 'prompt' column)." if "prompt" in df.columns else ""
                problems.append(
                    f"{where}: no '{messages_key}' column (data.messages_key); it has {list(df.columns)}.{hint}"
                )
                continue
            bad = [
                i
                for i, m in enumerate(df[messages_key])
                if not (_is_chat(m) and any(t["role"] == "assistant" for t in m))
            ]
            if bad:
                problems.append(
                    f"{where}: column '{messages_key}' must hold conversations with a user and an "
                    f"assistant turn; {len(bad)} row(s) do not, e.g. rows {bad[:5]}"
                )


def _files(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def check_data(cfg: DictConfig, keys: list[str], problems: list[str]) -> None:
    for key in keys:
        for path in _files(OmegaConf.select(cfg, key)):
            if not os.path.exists(os.path.expanduser(path)):
                problems.append(f"{key}: {path} does not exist")


def check_model(name: str, path: str | None, problems: list[str]) -> None:
    if not path:
        problems.append(f"{name} is not set")
    elif not (os.path.exists(os.path.expanduser(path)) or HUB_ID.match(path)):
        problems.append(f"{name}: {path} is neither a local folder nor a hub id (org/name)")


def check_grpo(overrides: list[str]) -> tuple[DictConfig | None, list[str]]:
    problems: list[str] = []
    cfg = compose_reporting("tars_grpo", overrides, problems)
    if cfg is None:
        return None, problems
    try:
        from verl.trainer.ppo.utils import need_critic, need_reference_policy
        from verl.utils.config import validate_config

        validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    except Exception as err:  # noqa: BLE001 - every problem is reported together
        problems.append(f"verl validate_config: {type(err).__name__}: {err}")
    problems += check_plugins(cfg)
    check_data(cfg, ["data.train_files", "data.val_files"], problems)
    check_rl_data(cfg, ["data.train_files", "data.val_files"], problems)
    check_model("actor_rollout_ref.model.path", cfg.actor_rollout_ref.model.path, problems)
    if cfg.reward.reward_model.enable:
        check_model("reward.reward_model.model_path", cfg.reward.reward_model.model_path, problems)
    try:
        from verl.trainer.ppo.reward import resolve_reward_manager_cls

        cls = resolve_reward_manager_cls(cfg)
        from tars_verl.reward.manager import TarsRewardManager

        if cls is not TarsRewardManager:
            problems.append(f"reward manager resolves to {cls.__name__}, not TarsRewardManager")
    except Exception as err:  # noqa: BLE001
        problems.append(f"reward manager: {type(err).__name__}: {err}")
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
    if OmegaConf.select(cfg, "trainer.use_v1") and mode:
        from verl.trainer.ppo.v1 import get_trainer_cls

        try:
            get_trainer_cls(mode)
        except ValueError as err:
            problems.append(f"trainer.v1.trainer_mode: {err}")
    return problems


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
    check_data(cfg, ["data.train_files", "data.val_files"], problems)
    check_sft_data(cfg, ["data.train_files", "data.val_files"], problems)
    check_model("model.path", cfg.model.path, problems)
    try:
        from tars_verl.training.sft import check_config

        check_config(cfg)
    except Exception as err:  # noqa: BLE001
        problems.append(str(err))
    from tars_verl.training.gpu_plan import check_gpu_sft

    problems += check_gpu_sft(cfg)
    return cfg, problems


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("grpo", "sft"):
        print(__doc__)
        return 2
    stage, overrides = argv[0], [a for a in argv[1:] if a != "--"]
    cfg, problems = (check_grpo if stage == "grpo" else check_sft)(overrides)
    if problems:
        print(f"[dry-run] {stage}: {len(problems)} problem(s):")
        from tars_verl.scorers.http import redact_text

        for p in dict.fromkeys(problems):
            print(f"  - {redact_text(p)}")  # overrides may hold URLs with passwords
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
