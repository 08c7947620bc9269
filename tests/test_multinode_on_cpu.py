"""Scorer settings and secrets reach Ray workers on every node through the job's runtime env, by name."""

import contextlib
import os
import shutil
import tempfile

import pytest

from tars_verl.config import compose
from tars_verl.training.multinode import forwarded_env, scorer_env_names
from tars_verl.verl_workarounds import ray_init_with_env


def test_the_env_the_reward_config_reads_is_found_by_name(monkeypatch):
    paper = compose("tars_grpo", ["tars@reward.tars=paper"])
    assert scorer_env_names(paper) == (["OPENAI_API_KEY"], [])
    open_ = compose("tars_grpo", ["tars@reward.tars=open"])
    assert scorer_env_names(open_) == ([], ["TARS_GUARD_MODEL", "TARS_GUARD_URL"])
    monkeypatch.setenv("TARS_GUARD_URL", "http://10.0.0.7:8001/v1")
    monkeypatch.delenv("TARS_GUARD_MODEL", raising=False)
    assert forwarded_env(open_) == {"TARS_GUARD_URL": "http://10.0.0.7:8001/v1"}  # unset names are not invented


@pytest.mark.slow
def test_ray_workers_get_the_forwarded_values_and_the_log_only_names(capsys):
    """The value is NOT in this process's environment, so a worker can only see it through the runtime env; and
    neither what is printed nor Ray's own log files hold it (Ray's runtime-env agent logs runtime envs at INFO)."""
    ray = pytest.importorskip("ray")
    secret = "sk-forwarded-" + "x" * 8
    assert "TARS_TEST_SECRET" not in os.environ and "RAY_LOGGER_LEVEL" not in os.environ

    @ray.remote(num_cpus=1)
    def read_env():
        import os as worker_os

        return worker_os.environ.get("TARS_TEST_SECRET"), worker_os.environ.get("TOKENIZERS_PARALLELISM")

    original = ray.init
    temp_dir = tempfile.mkdtemp(prefix="tars_ray_", dir="/tmp")  # this test's own Ray files (short: socket paths)
    try:
        with ray_init_with_env({"TARS_TEST_SECRET": secret}):
            # as verl's main_ppo calls it: its own env_vars must survive next to ours
            ray.init(
                num_cpus=1,
                include_dashboard=False,
                runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "true"}},
                _temp_dir=temp_dir,
            )
        try:
            assert ray.init is original and "RAY_LOGGER_LEVEL" not in os.environ
            assert ray.get(read_env.remote()) == (secret, "true")
        finally:
            ray.shutdown()
        out = capsys.readouterr()
        assert "TARS_TEST_SECRET" in out.out and secret not in out.out + out.err
        leaks = []
        for folder, _, names in os.walk(temp_dir):
            for name in names:
                with contextlib.suppress(OSError), open(os.path.join(folder, name), "rb") as f:
                    if secret.encode() in f.read():
                        leaks.append(name)
        assert leaks == []  # without RAY_QUIET_AGENT: ['runtime_env_agent.log']
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
