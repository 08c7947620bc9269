"""The Hydra overrides that turn a verl 0.9.x GRPO run into a TARS run, for your own config and launcher.

    python -m tars_verl.overrides --preset open                  # a bash array, each override with what it is for
    python -m tars_verl.overrides --preset open --format lines   # one per line:  mapfile -t TARS < <(...)
    python -m tars_verl.overrides --preset open --format json    # a JSON list, for a Python launcher
    python -m tars_verl.overrides --preset tiny_cpu tars_scorer@reward.tars.safety=llama_guard3   # + your swaps
    ray job submit --runtime-env <(python -m tars_verl.overrides --preset open --runtime-env) -- \\
        python -m verl.trainer.main_ppo ... "${TARS[@]}"          # scorer settings and secrets for every node

Nothing here is a second copy of the launch scripts' settings: the overrides are read from
``tars_verl/config/tars_additions.yaml`` (what ``tars_grpo.yaml`` and the launch scripts'
``tars_grpo_recipe.yaml`` add to verl's ``ppo_trainer``) and, when the preset's scorer asks verl to serve the reward
model (``url: verl``), from that scorer's config and the workaround ``served_rm_routing``;
``tests/test_verl_integration_on_cpu.py`` composes them onto verl's own ``ppo_trainer`` and checks that the result
is the launch scripts' config. ``docs/verl_integration.md`` explains each one.

``--runtime-env`` writes the VALUES of the environment variables the reward config reads (``api_key_env`` secrets,
``${oc.env:...}`` settings; the names :func:`tars_verl.training.multinode.scorer_env_names` finds, as the launch
scripts' entry point forwards them) as a Ray runtime env, so it refuses to write to a terminal: give it to
``ray job submit --runtime-env`` through a pipe, as above.

>>> [o.text for o in tars_overrides("tiny_cpu")][:3]
['hydra.searchpath=[pkg://tars_verl.config]', '+tars@reward.tars=tiny_cpu', 'reward.reward_manager.source=register']
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Any

ADDITIONS = "tars_additions.yaml"  # in tars_verl/config
SEARCHPATH = "hydra.searchpath=[pkg://tars_verl.config]"
VERL_SERVED_URL = "verl"  # a scorer url meaning "the RM verl serves" (scorers/served_reward_model.py VERL_ROUTER)

# What each override is for, by key. A key in tars_additions.yaml without an entry here fails the tests.
WHY = {
    "hydra.searchpath": "lets Hydra find the TARS config groups tars/ (presets) and tars_scorer/ (scorers); "
    "if your config sets a searchpath, add pkg://tars_verl.config to yours instead",
    "tars@reward.tars": "reward.tars: the scorers (safety, helpfulness, validation judge), reward mode and options",
    "reward.reward_manager.source": "look the reward manager up in verl's registry by name",
    "reward.reward_manager.name": "TarsRewardManager, registered as `tars` by the verl.plugins entry point",
    "trainer.v1.trainer_mode": "verl's sync trainer + tars/<type>/... metrics per step, and the data-row fields "
    "(prompt_type) that verl's colocated reward batch lacks",
    "reward.reward_model.enable": "verl serves the reward model the preset scores helpfulness with (url: verl)",
    "reward.reward_model.model_path": "the reward model verl serves: the preset scorer's model",
    "reward.reward_model.rollout.name": "the engine verl serves it with (vllm; sglang is read over /v1/embeddings)",
    "reward.custom_reward_function.path": "keeps verl from bypassing the TARS manager when it serves a reward "
    "model (workaround served_rm_routing)",
    "reward.custom_reward_function.name": "(same)",
}


@dataclass(frozen=True)
class Override:
    """One Hydra override (``text``, e.g. ``trainer.v1.trainer_mode=tars``) and what it is for."""

    text: str
    why: str

    @property
    def key(self) -> str:
        return self.text.split("=", 1)[0].lstrip("+")


def _hydra_value(value: Any) -> str:
    """A YAML value as Hydra's override grammar reads it back."""
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def _leaves(node: Any, prefix: str = ""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def additions() -> tuple[list[tuple[str, str]], list[tuple[str, Any]]]:
    """(defaults entries as (group@package, option), body leaves as (key, value)) of tars_additions.yaml."""
    from omegaconf import OmegaConf

    text = (resources.files("tars_verl.config") / ADDITIONS).read_text()
    raw = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    defaults = []
    for entry in raw.pop("defaults", []):
        if isinstance(entry, dict):
            defaults += list(entry.items())
        elif entry != "_self_":
            raise ValueError(f"tars_verl/config/{ADDITIONS}: defaults entry {entry!r} is not `group@package: option`")
    return defaults, list(_leaves(raw))


def _why(key: str) -> str:
    try:
        return WHY[key]
    except KeyError:
        raise KeyError(f"tars_verl.overrides.WHY has no explanation for {key!r}: add one") from None


def tars_overrides(preset: str, extra: list[str] = (), rm_rollout: str = "vllm") -> list[Override]:
    """The overrides for ``preset``, with ``extra`` TARS overrides (scorer swaps) taken into account and appended."""
    from tars_verl.verl_workarounds import served_rm_overrides

    defaults, body = additions()
    out = [Override(SEARCHPATH, _why("hydra.searchpath"))]
    for group, option in defaults:
        chosen = preset if group == "tars@reward.tars" else option
        out.append(Override(f"+{group}={chosen}", _why(group)))
    out += [Override(f"{key}={_hydra_value(value)}", _why(key)) for key, value in body]
    served = served_rm_model(preset, extra)
    if served is not None:
        out += [
            Override("reward.reward_model.enable=True", _why("reward.reward_model.enable")),
            Override(f"reward.reward_model.model_path={served}", _why("reward.reward_model.model_path")),
            Override(f"reward.reward_model.rollout.name={rm_rollout}", _why("reward.reward_model.rollout.name")),
        ]
        out += [Override(o, _why(o.split("=", 1)[0])) for o in served_rm_overrides()]
    out += [Override(o, "your own TARS setting") for o in extra]
    return out


def tars_config(preset: str, extra: list[str] = ()):
    """``reward.tars`` of ``preset`` with ``extra`` overrides, composed as a run composes it."""
    from tars_verl.config import compose

    return compose("tars_grpo", [f"tars@reward.tars={preset}", *extra])


def served_rm_model(preset: str, extra: list[str] = ()) -> str | None:
    """The model verl must serve for ``preset`` (a safety or helpfulness scorer with ``url: verl``), or None."""
    from omegaconf import OmegaConf

    tars = tars_config(preset, extra).reward.tars
    for role in ("safety", "helpfulness"):
        if OmegaConf.select(tars, f"{role}.url", default=None) == VERL_SERVED_URL:
            return OmegaConf.select(tars, f"{role}.model")
    return None


def runtime_env(preset: str, extra: list[str] = ()) -> dict:
    """The Ray runtime env that gives every worker this machine's values of the reward config's env variables."""
    from tars_verl.training.multinode import forwarded_env, scorer_env_names

    cfg = tars_config(preset, extra)
    secrets, _ = scorer_env_names(cfg)
    env = forwarded_env(cfg)
    missing = [name for name in secrets if name not in env]
    if missing:
        raise SystemExit(
            f"[tars] {', '.join(missing)} not set here: the reward config reads it (api_key_env); export it"
        )
    return {"env_vars": env}


def render_bash(preset: str, overrides: list[Override], env_names: list[str], extra: list[str] = ()) -> str:
    width = max(len(shlex.quote(o.text)) for o in overrides)
    lines = [f"# TARS on verl 0.9.x, preset {preset}: add these to your verl GRPO command (docs/verl_integration.md)."]
    if env_names:
        again = shlex.join(["python", "-m", "tars_verl.overrides", "--preset", preset, "--runtime-env", *extra])
        lines += [
            f"# The reward workers read {', '.join(env_names)} from their environment; on a multi-node cluster:",
            f"#   ray job submit --runtime-env <({again}) -- ...",
        ]
    lines.append("TARS_OVERRIDES=(")
    lines += [f"  {shlex.quote(o.text):<{width}}  # {o.why}" for o in overrides]
    lines += [")", '# python -m verl.trainer.main_ppo <your settings> "${TARS_OVERRIDES[@]}"']
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tars_verl.overrides", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper", help="reward preset: paper, open or tiny_cpu (default: paper)")
    parser.add_argument("--format", choices=("bash", "lines", "json"), default="bash")
    parser.add_argument("--rm-rollout", default="vllm", help="engine verl serves a reward model with (vllm, sglang)")
    parser.add_argument(
        "--runtime-env", action="store_true", help="print the Ray runtime env with the values (to a pipe only)"
    )
    parser.add_argument("extra", nargs="*", metavar="OVERRIDE", help="your TARS overrides (scorer swaps, options)")
    args = parser.parse_args(argv)
    if args.runtime_env:
        if sys.stdout.isatty():
            print(
                "[tars] --runtime-env writes secret values; give it to Ray through a pipe, not to a terminal:\n"
                f"  ray job submit --runtime-env <(python -m tars_verl.overrides --preset {args.preset} "
                "--runtime-env ...) -- ...",
                file=sys.stderr,
            )
            return 2
        print(json.dumps(runtime_env(args.preset, args.extra)))
        return 0
    overrides = tars_overrides(args.preset, args.extra, args.rm_rollout)
    if args.format == "lines":
        print("\n".join(o.text for o in overrides))
    elif args.format == "json":
        print(json.dumps([o.text for o in overrides], indent=1))
    else:
        from tars_verl.training.multinode import scorer_env_names

        secrets, settings = scorer_env_names(tars_config(args.preset, args.extra))
        print(render_bash(args.preset, overrides, secrets + settings, args.extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
