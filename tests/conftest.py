import asyncio
import os

import pytest

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
