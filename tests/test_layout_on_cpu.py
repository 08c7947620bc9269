"""The package layout (README, "Layout"): old module paths still work as shims, the commands run, and nothing
that verl imports inside a reward worker (``tars_verl/reward/``) pulls in driver-side code."""

import ast
import importlib
import os
import subprocess
import sys

import pytest

import tars_verl

PACKAGE_DIR = os.path.dirname(tars_verl.__file__)
REPO = os.path.dirname(PACKAGE_DIR)

# Old public path -> where it lives since 0.2.
MOVED = {
    "tars_verl.reward_manager": "tars_verl.reward.manager",
    "tars_verl.reward_config": "tars_verl.reward.config",
    "tars_verl.parsing": "tars_verl.reward.response_format",
    "tars_verl.batching": "tars_verl.reward.batching",
    "tars_verl.type_metrics": "tars_verl.reward.per_type_metrics",
    "tars_verl.reward_log": "tars_verl.reward.log_schema",
    "tars_verl.dry_run": "tars_verl.training.dry_run",
    "tars_verl.sft": "tars_verl.training.sft",
    "tars_verl.trainer": "tars_verl.training.trainer",
    "tars_verl.main_ppo": "tars_verl.training.main_ppo",
    "tars_verl.gpu_plan": "tars_verl.training.gpu_plan",
    "tars_verl.multinode": "tars_verl.training.multinode",
    "tars_verl.verl_compose": "tars_verl.training.compose",
    "tars_verl.evaluate": "tars_verl.eval.cli",
}
DRIVER_SIDE = ("tars_verl.training", "tars_verl.eval")


@pytest.mark.parametrize("old,new", sorted(MOVED.items()))
def test_old_path_warns_and_reexports_the_same_objects(old, new):
    sys.modules.pop(old, None)  # a shim warns when it is imported; an earlier test may have imported it already
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new};"):
        old_module = importlib.import_module(old)
    new_module = importlib.import_module(new)
    assert (
        old_module is not new_module and old_module.__file__ == os.path.join(PACKAGE_DIR, *old.split(".")[1:]) + ".py"
    )
    names = [n for n in vars(new_module) if not (n.startswith("__") and n.endswith("__"))]
    assert names, new
    for name in names:  # private helpers too: tests and configs written before 0.2 use some of them
        assert getattr(old_module, name) is getattr(new_module, name), (old, name)


def test_old_paths_register_nothing_twice():
    """``tars`` in verl's reward-manager and trainer registries is the new modules' class, whichever path is used."""
    from verl.experimental.reward_loop.reward_manager.registry import get_reward_manager_cls
    from verl.trainer.ppo.v1 import get_trainer_cls

    for old in ("tars_verl.reward_manager", "tars_verl.trainer"):
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning):
            importlib.import_module(old)
    from tars_verl.reward.manager import TarsRewardManager
    from tars_verl.training.trainer import TarsPPOTrainer

    assert (
        get_reward_manager_cls("tars") is TarsRewardManager is sys.modules["tars_verl.reward_manager"].TarsRewardManager
    )
    assert get_trainer_cls("tars") is TarsPPOTrainer is sys.modules["tars_verl.trainer"].TarsPPOTrainer


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


@pytest.mark.slow  # each command imports verl or transformers in a fresh interpreter: ~25 s on 2 cores
def test_python_m_tars_verl_eval_is_the_evaluation_command():
    done = _run("-m", "tars_verl.eval", "--help")
    assert done.returncode == 0, done.stderr
    assert "--model" in done.stdout and "--safety-judge" in done.stdout
    assert "DeprecationWarning" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "old,new,marker",
    [
        ("tars_verl.sft", "tars_verl.training.sft", "tars_sft"),  # Hydra's --help: the composed SFT config
        ("tars_verl.evaluate", "tars_verl.eval", "--safety-judge"),
    ],
)
def test_old_python_m_paths_still_run_and_say_where_they_moved(old, new, marker):
    done = _run("-m", old, "--help")
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout
    # The shim is __main__, so Python shows its DeprecationWarning without any warning filter set.
    assert f"DeprecationWarning: python -m {old} moved to python -m {new} " in done.stderr


def _module_file(name: str) -> str | None:
    """The file of a tars_verl module (a package's __init__.py), or None for other modules."""
    if name != "tars_verl" and not name.startswith("tars_verl."):
        return None
    path = os.path.join(REPO, *name.split("."))
    for candidate in (path + ".py", os.path.join(path, "__init__.py")):
        if os.path.exists(candidate):
            return candidate
    return None


def _imported_modules(path: str, module: str) -> set[str]:
    """Every module an ``import`` in the file names (functions and branches included: a lazy import still runs in
    the worker that calls it), plus the target of a moved-module shim (``reexport(globals(), old, new)``)."""
    tree = ast.parse(open(path).read(), path)
    is_package = path.endswith("__init__.py")
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            out.add(prefix)
            out.update(f"{prefix}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "reexport":
            out.update(a.value for a in node.args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, str))
    parents = set()  # importing a.b.c runs a/__init__.py and a/b/__init__.py
    for name in out:
        parts = name.split(".")
        parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out | parents


def driver_side_imports(start: list[str]) -> dict[str, list[str]]:
    """Follow tars_verl imports from ``start``; for each driver-side module reached, one import chain to it."""
    chains: dict[str, list[str]] = {name: [name] for name in start}
    todo = list(start)
    found: dict[str, list[str]] = {}
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None:
            continue
        for imported in sorted(_imported_modules(path, name)):
            if imported in chains:
                continue
            chains[imported] = chains[name] + [imported]
            if imported.startswith(DRIVER_SIDE) or MOVED.get(imported, "").startswith(DRIVER_SIDE):
                found[imported] = chains[imported]
            elif _module_file(imported) is not None:
                todo.append(imported)
    return found


def reward_modules() -> list[str]:
    folder = os.path.join(PACKAGE_DIR, "reward")
    return sorted(
        f"tars_verl.reward.{f[:-3]}".removesuffix(".__init__") for f in os.listdir(folder) if f.endswith(".py")
    )


def test_reward_worker_code_imports_nothing_driver_side():
    """verl imports tars_verl.reward.* in every reward worker (each Ray process that scores): it must stay light."""
    modules = reward_modules()
    assert "tars_verl.reward.manager" in modules and "tars_verl.reward.config" in modules
    assert driver_side_imports(modules) == {}


def test_the_import_check_sees_lazy_and_shimmed_imports(tmp_path, monkeypatch):
    """The check above can fail: an import inside a function, or one through an old path's shim, is reported."""
    fake = tmp_path / "tars_verl"
    (fake / "reward").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "reward" / "__init__.py").write_text("")
    (fake / "reward" / "lazy.py").write_text(
        "def f():\n    from tars_verl.training.compose import compose_tars_config\n"
    )
    (fake / "reward" / "shimmed.py").write_text("from .. import verl_compose\n")
    (fake / "verl_compose.py").write_text(open(os.path.join(PACKAGE_DIR, "verl_compose.py")).read())
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    assert set(driver_side_imports(["tars_verl.reward.lazy"])) >= {"tars_verl.training.compose"}
    assert set(driver_side_imports(["tars_verl.reward.shimmed"])) >= {"tars_verl.verl_compose"}
