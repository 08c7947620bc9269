"""Multi-node runs: scorer settings and secrets reach the reward workers on every node.

verl places its reward-loop workers (CPU Ray actors) on every node of the cluster. They rebuild the
``reward.tars`` config there, so ``${oc.env:TARS_GUARD_URL,...}`` resolves against THAT node's
environment, and an API key named by ``api_key_env`` is read there too. Exports on the head do not
travel: Ray passes only the runtime env's ``env_vars``, and verl's carry only its own variables.

:func:`forwarded_env` lists what the reward config needs from the environment (every ``oc.env``
variable it references and every ``api_key_env``); ``python -m tars_verl.training.main_ppo`` (the launch
scripts' entry point; otherwise exactly ``verl.trainer.main_ppo``) adds them to the runtime env of
the Ray job verl starts (``verl_workarounds.ray_init_with_env``). Values are never put in the Hydra
config (verl prints the config and its Ray init arguments) nor logged: only the names are printed.
:func:`check_multinode` is the dry-run side.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

ENV_REF = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)")
LOOPBACK = {"127.0.0.1", "localhost", "0.0.0.0", "::1", "[::1]"}


def _walk(node, key: str):
    """Every value stored under ``key`` at any depth of a plain dict/list tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)


def scorer_env_names(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """(secrets, settings): ``api_key_env`` names, and variables the ``reward.tars`` config reads with oc.env."""
    tars = OmegaConf.select(cfg, "reward.tars")
    if tars is None:
        return [], []
    raw = OmegaConf.to_yaml(tars, resolve=False)
    settings = sorted(set(ENV_REF.findall(raw)))
    resolved = OmegaConf.to_container(tars, resolve=True)
    secrets = sorted({v for v in _walk(resolved, "api_key_env") if v})
    return secrets, [s for s in settings if s not in secrets]


def forwarded_env(cfg: DictConfig) -> dict[str, str]:
    """The values to give every Ray worker: those of :func:`scorer_env_names` that are set here."""
    secrets, settings = scorer_env_names(cfg)
    return {name: os.environ[name] for name in secrets + settings if os.environ.get(name)}


def scorer_urls(cfg: DictConfig) -> list[tuple[str, str]]:
    """(config key, url) of every served scorer in ``reward.tars`` (``url: verl`` excluded)."""
    tars = OmegaConf.select(cfg, "reward.tars")
    if tars is None:
        return []
    out = []
    resolved = OmegaConf.to_container(tars, resolve=True)

    def visit(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "url" and isinstance(v, str) and v != "verl":
                    out.append((f"{path}.url", v))
                else:
                    visit(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                visit(v, f"{path}[{i}]")

    visit(resolved, "reward.tars")
    return out


def check_multinode(cfg: DictConfig) -> list[str]:
    """With ``trainer.nnodes > 1``: scorer URLs every node can reach, and the secrets they need set here."""
    if int(OmegaConf.select(cfg, "trainer.nnodes", default=1) or 1) <= 1:
        return []
    problems = []
    secrets, settings = scorer_env_names(cfg)
    for key, url in scorer_urls(cfg):
        host = urlparse(url).hostname or ""
        if host in LOOPBACK or host.startswith("127."):
            via = [s for s in settings if "URL" in s]
            hint = f" (export {via[0]}=http://<this-node's-address>:<port>/...)" if via else ""
            problems.append(
                f"{key}={url} with trainer.nnodes={cfg.trainer.nnodes} (NNODES): reward workers on "
                f"the other nodes would call their own {host}; use an address every node can reach"
                f"{hint}"
            )
    for name in secrets:
        if not os.environ.get(name):
            problems.append(
                f"{name} is not set on this node: with trainer.nnodes={cfg.trainer.nnodes} the launch "
                f"script forwards it to the reward workers on every node, so export it here"
            )
    return problems
