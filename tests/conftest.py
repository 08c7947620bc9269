import asyncio
import os
import subprocess
import sys

import pytest

# Ray in this process (tests that call ray.init) stays on 127.0.0.1, as in cpu_env() for subprocesses.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from tars_verl.testing.fake_servers import ScorerServer
from tars_verl.testing.tiny_models import ensure_tiny_models
from tars_verl.testing.wildguard_standin import write_wildguard_utils


@pytest.fixture(scope="session", autouse=True)
def wildguard_prompt(tmp_path_factory):
    """guard_chat's wildguard format reads WildGuard's prompt at run time from its repository; tests (and the servers
    and workers they start, which inherit the environment) read the project's stand-in instead: no network."""
    os.environ["TARS_WILDGUARD_URL"] = write_wildguard_utils(str(tmp_path_factory.mktemp("wildguard")))
    return os.environ["TARS_WILDGUARD_URL"]


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


# -- HTTP scorers against the fake servers -------------------------------------------------------------------------
FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}  # retries in milliseconds, so fault tests stay quick


def items(*texts, prompt="How do I do it?"):
    """One ScoreItem per response text, all answering the same one-turn ``prompt``."""
    from tars_verl.scorers import ScoreItem  # here, not above: the scorers take seconds to import

    return [ScoreItem(prompt=prompt, text=t, messages=[{"role": "user", "content": prompt}]) for t in texts]


def moderation(server, monkeypatch, **kw):
    """An ``openai_moderation`` scorer against ``server``, its key read from a test-only variable."""
    from tars_verl.scorers import build_scorer

    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test-secret")
    cfg = {"backend": "openai_moderation", "url": server.url + "/v1", "api_key_env": "TEST_OPENAI_KEY", **FAST, **kw}
    return build_scorer(cfg)


def verl_rl_dataset(parquet, tokenizer_dir, cache_dir):
    """verl's own RLHFDataset over ``parquet``: prompts up to 512 tokens (longer ones filtered), raw chat kept."""
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    data_cfg = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "max_prompt_length": 512,
            "filter_overlong_prompts": True,
            "return_raw_chat": True,
            "cache_dir": str(cache_dir),
            "filter_overlong_prompts_workers": 1,
        }
    )
    return RLHFDataset(str(parquet), AutoTokenizer.from_pretrained(str(tokenizer_dir)), data_cfg)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(script, env_extra, *args, timeout=300, examples=os.path.join(ROOT, "examples")):
    """Run ``examples/<script>`` (or ``<examples>/<script>``) as a user would; ``env_extra`` values of None unset
    that variable."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], **env_extra}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(
        ["bash", os.path.join(examples, script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sft_generate_args(out, server, *extra, model="teacher"):
    """The ``sft_traces generate`` command line against ``server`` (a ScorerServer posing as the teacher):
    one sample per prompt, written under ``out``; ``extra`` flags last."""
    return ["generate", "--out", str(out), "--url", server.url + "/v1", "--model", model, "--samples", "1", *extra]


# -- real vLLM servers (scripts/setup_vllm_venv.sh builds .venv-vllm; started once per test session) -----------
def require_vllm():
    """The vLLM environment's python; in CI (CI=true) its absence fails loudly, elsewhere the test is skipped."""
    from tars_verl.testing.vllm_server import vllm_python

    python = vllm_python()
    if python is None:
        msg = "no vLLM environment (.venv-vllm): run `bash scripts/setup_vllm_venv.sh` (scripts/test.sh does)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(msg)
        pytest.skip(msg)
    return python


@pytest.fixture(scope="session")
def served_models(tmp_path_factory):
    """Tiny models with certain replies for vLLM (tars_verl/testing/served_models.py), trained once per session."""
    from tars_verl.testing.served_models import ensure_served_models

    require_vllm()
    return ensure_served_models(
        os.environ.get("TARS_SERVED_MODELS_DIR") or str(tmp_path_factory.mktemp("served") / "models"),
        log=lambda m: None,
    )


@pytest.fixture(scope="session")
def vllm_servers(served_models):
    """Real vLLM servers, started together once per session: ``lm`` (the trained responder, served as
    tiny-guard / tiny-judge / tiny-teacher / tiny-policy) and ``rm`` (a 1-logit classifier, tiny-rm)."""
    from tars_verl.testing.vllm_server import VLLMServer

    servers = {
        "lm": VLLMServer(
            os.path.join(served_models, "responder"), ["tiny-guard", "tiny-judge", "tiny-teacher", "tiny-policy"]
        ),
        "rm": VLLMServer(os.path.join(served_models, "reward_model"), ["tiny-rm"]),
    }
    try:
        for srv in servers.values():
            srv.launch()
        for srv in servers.values():
            srv.wait_ready()
        yield servers
    finally:
        for srv in servers.values():
            srv.__exit__(None, None, None)
