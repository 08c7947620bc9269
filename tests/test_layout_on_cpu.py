"""The package layout (docs/development.md, "Layout"): the old pre-0.2 paths are gone, the commands run, and nothing
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

DRIVER_SIDE = ("tars_verl.training", "tars_verl.eval")


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
    the worker that calls it)."""
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
            if imported.startswith(DRIVER_SIDE):
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


def test_the_import_check_sees_lazy_imports(tmp_path, monkeypatch):
    """The check above can fail: an import inside a function is reported."""
    fake = tmp_path / "tars_verl"
    (fake / "reward").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "reward" / "__init__.py").write_text("")
    (fake / "reward" / "lazy.py").write_text("def f():\n    from tars_verl.training.dry_run import main\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    assert set(driver_side_imports(["tars_verl.reward.lazy"])) >= {"tars_verl.training.dry_run"}


OLD_PATHS = (
    "tars_verl.reward_manager",
    "tars_verl.reward_config",
    "tars_verl.parsing",
    "tars_verl.batching",
    "tars_verl.type_metrics",
    "tars_verl.reward_log",
    "tars_verl.dry_run",
    "tars_verl.sft",
    "tars_verl.trainer",
    "tars_verl.main_ppo",
    "tars_verl.gpu_plan",
    "tars_verl.multinode",
    "tars_verl.verl_compose",
    "tars_verl.evaluate",
    "tars_verl._moved",
)


@pytest.mark.parametrize("old", OLD_PATHS)
def test_pre_0_2_paths_are_gone(old):
    """0.2 removed the compatibility shims (CHANGELOG.md lists each move): an old path fails to import."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
