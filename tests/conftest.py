import asyncio
import os
import subprocess
import sys

import pytest

# Ray in this process (tests that call ray.init) stays on 127.0.0.1, as in cpu_env() for subprocesses.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from tars_verl.testing.fake_servers import ScorerServer
from tars_verl.testing.tiny_models import ensure_tiny_models


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    root = ensure_tiny_models(str(tmp_path_factory.mktemp("tiny") / "models"))
    os.environ["TARS_TINY_DIR"] = root  # the tiny_cpu preset reads it
    return root


@pytest.fixture
def server():
    with ScorerServer() as srv:
        yield srv


def run(coro):
    return asyncio.run(coro)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(script, env_extra, *args, timeout=300):
    """Run ``examples/<script>`` as a user would; ``env_extra`` values of None unset that variable."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], **env_extra}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(["bash", os.path.join(ROOT, "examples", script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
