"""The `gpu` extra follows verl's own tested GPU stack; the CPU install stays unpinned (offline checks).

The online half, resolving `.[gpu]` for a GPU machine from wheel metadata only, is
scripts/check_gpu_install.sh (needs PyPI; CI runs it as its own step).
"""

import os
from importlib.metadata import requires

import tomllib
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def verl_extra(extra: str) -> dict[str, Requirement]:
    """verl's own requirements for one extra, read from the installed wheel's metadata."""
    reqs = [Requirement(r) for r in requires("verl") or []]
    return {r.name.lower(): r for r in reqs if r.marker is not None and r.marker.evaluate({"extra": extra})}


def test_gpu_extra_pins_exactly_what_verl_tests_with_vllm():
    gpu = {r.name.lower(): r for r in map(Requirement, project()["optional-dependencies"]["gpu"])}
    tested = verl_extra("vllm")
    assert "vllm" in gpu["verl"].extras  # verl's own extra comes along (mbridge, torchvision, ...)
    for name in ("torch", "vllm", "transformers"):
        assert str(gpu[name].specifier) == str(tested[name].specifier), (name, gpu.get(name), tested[name])
        assert str(gpu[name].specifier).startswith("==")  # one tested version, not a range pip may leave


def test_cpu_install_is_not_pinned_to_the_gpu_stack():
    base = {r.name.lower(): r for r in map(Requirement, project()["dependencies"])}
    for name in ("torch", "transformers"):
        assert "==" not in str(base[name].specifier)  # CPU machines keep their torch (2.13.0 in CI)
    assert "vllm" not in base and "vllm" not in base["verl"].extras
