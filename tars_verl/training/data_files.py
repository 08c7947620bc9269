"""The data-file checks of a launch, in one place: the ``--dry-run`` (:mod:`tars_verl.training.dry_run`) and the SFT
entry point (:mod:`tars_verl.training.sft`) both call them, so a problem is found once and reported in one wording
that names the config key, the file and, for its contents, the column and the rows.

>>> from omegaconf import OmegaConf
>>> cfg = OmegaConf.create({"data": {"train_files": "/no/sft_train.parquet", "val_files": None}})
>>> missing_data_files(cfg, "sft")
['data.train_files: /no/sft_train.parquet does not exist (build it with data_prep/build_sft_traces.py)']
>>> builder_for("data/eval/strongreject_small.parquet", "grpo")
'data_prep/build_eval_sets.py'
"""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf

DATA_KEYS = ("data.train_files", "data.val_files")
# What writes each stage's files: named in the problem, so it says what to do.
BUILDERS = {
    "grpo": "data_prep/build_rl_mix.py, or data_prep/import_tars_release.py for the authors' released data",
    "sft": "data_prep/build_sft_traces.py",
}
EVAL_BUILDER = "data_prep/build_eval_sets.py"


def builder_for(path: str, stage: str) -> str:
    """The script that writes ``path``: an evaluation set (``strongreject_small.parquet``: the launch scripts'
    validation file) comes from build_eval_sets.py, whatever the stage; the rest from the stage's builder."""
    from tars_verl.data.eval_sets import EVAL_SETS

    stem = os.path.basename(str(path)).split(".", 1)[0]
    return EVAL_BUILDER if stem in EVAL_SETS else BUILDERS[stage]


def configured_files(cfg: DictConfig, key: str) -> list[str]:
    """The file(s) a data key names: one path or a list; none when unset."""
    value = OmegaConf.select(cfg, key)
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def missing_data_files(cfg: DictConfig, stage: str, keys: tuple[str, ...] = DATA_KEYS) -> list[str]:
    """One problem per configured data file that does not exist (``stage``: ``grpo`` or ``sft``)."""
    return [
        f"{key}: {path} does not exist (build it with {builder_for(path, stage)})"
        for key in keys
        for path in configured_files(cfg, key)
        if not os.path.exists(os.path.expanduser(path))
    ]


def check_rl_data(cfg: DictConfig, keys: list[str], problems: list[str]) -> dict[str, dict[str, int]]:
    """The files verl's RLHFDataset will read hold a TARS RL mix: format, prompt column of chat messages, and a
    prompt type on every row. Returns the prompt-type counts per file."""
    prompt_key = OmegaConf.select(cfg, "data.prompt_key") or "prompt"
    from tars_verl.reward.prompt_type import PROMPT_TYPE_KEY

    type_key = OmegaConf.select(cfg, "reward.tars.prompt_type_key") or PROMPT_TYPE_KEY
    counts: dict[str, dict[str, int]] = {}
    for key in keys:
        for path in configured_files(cfg, key):
            path = os.path.expanduser(path)
            if not os.path.exists(path):
                continue  # missing_data_files reports it
            found = _check_rl_file(key, path, prompt_key, type_key, problems)
            if found is not None:
                counts[path] = found
    return counts


def _check_rl_file(key, path, prompt_key, type_key, problems):
    from tars_verl.data.files import read_table
    from tars_verl.reward.prompt_type import PromptTypeError, resolve_prompt_type

    where = f"{key}: {path}"
    if os.path.isdir(path):
        problems.append(
            f"{where} is a folder; verl needs the file(s) themselves, e.g. "
            + ("train.parquet from " + BUILDERS["grpo"] if "train" in key else f"a .parquet file from {EVAL_BUILDER}")
        )
        return None
    if not path.endswith((".parquet", ".json", ".jsonl")):
        problems.append(
            f"{where}: verl's RL dataset reads .parquet, .json or .jsonl only; build the file with "
            f"{builder_for(path, 'grpo')}"
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
    from tars_verl.data.files import read_table

    messages_key = OmegaConf.select(cfg, "data.messages_key") or "messages"
    for key in keys:
        for path in configured_files(cfg, key):
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
