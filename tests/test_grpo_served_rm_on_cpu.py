"""The users' default shape on CPU: verl serves the helpfulness reward model itself, safety is a scorer over HTTP.

`examples/run_tars_qwen7b.sh` with the `open` preset (Llama Guard over HTTP for harmful prompts, GRM served by
verl through `served_reward_model` with `url: verl` for the others), tiny sizes: verl's RewardModelManager starts
the `tars_hf` rollout's reward-model replica (a tiny sequence classifier behind a real HTTP /classify on
127.0.0.1, as vLLM serves it), colocated with the actor (reward.reward_model.enable=True, no separate pool), so
every reward goes through verl's colocated path (trainer_base._compute_reward_colocate) and the `tars` trainer.
The guard is the fake OpenAI-compatible server of tars_verl/testing/fake_servers.py. No SFT stage (the tiny
policy is the warm start): this test is about the reward path, tests/test_grpo_on_cpu.py about learning.

Both runs also carry planted secrets (tests/test_secret_scrubbing_on_cpu.py is the evaluation side): the guard's URL
holds a password in one, its API key is in the environment (and echoed back by the guard) in the other; no output
file, nor the run's stdout/stderr (verl prints the resolved config, scorer URLs included), may show either.
"""

import base64
import json
import os

import pandas as pd
import pytest
from conftest import run_example
from test_grpo_on_cpu import N_ROLLOUTS, TINY_GRPO_ENV, TRAIN_BATCH, step_metrics, write_tiny_mix

from tars_verl.reward.prompt_type import PROMPT_TYPES
from tars_verl.testing.cpu_platform import cpu_env, grpo_cpu_overrides

STEPS = 2


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("served_rm_data")
    write_tiny_mix(root)
    return root / "tars"


def leaked(text: str, secret: str, user: str | None = None) -> list[str]:
    """The forms of ``secret`` found in ``text``: raw, base64, and the Basic header's base64 of user:secret."""
    found = [secret, base64.b64encode(secret.encode()).decode().rstrip("=")]
    if user is not None:
        found.append(base64.b64encode(f"{user}:{secret}".encode()).decode().rstrip("="))
    return [f for f in found if f in text]


def written_text(folder) -> str:
    parts = []
    for dirpath, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                parts.append(f.read().decode("utf-8", errors="replace"))
    return "\n".join(parts)


def run_open_preset_with_served_rm(data, tiny_dir, tmp_path, server, *extra, n_slots=1, guard_url=None, env=None):
    """The launch script with the open preset and verl serving the RM; checks the step metrics and returns them
    with the run's output (stdout + stderr)."""
    request_log = tmp_path / "rm_requests.jsonl"
    env = {
        **cpu_env(),
        "CUDA_VISIBLE_DEVICES": None,
        "SFT_MODEL_PATH": f"{tiny_dir}/policy",
        "TRAIN_FILE": str(data / "train.parquet"),
        "VAL_FILE": str(data / "val.parquet"),
        # The open preset as users run it: verl serves the RM (TARS_SERVE_RM defaults to 1 for paper/open).
        "TARS_PRESET": "open",
        "RM_PATH": f"{tiny_dir}/reward_model",
        "RM_TP": "1",
        "TARS_GUARD_URL": guard_url or f"{server.url}/v1",
        "TARS_GUARD_MODEL": "llama-guard-fake",
        "TARS_HF_RM_REQUEST_LOG": str(request_log),
        **TINY_GRPO_ENV,
        "MAX_RESPONSE": "24",
        "TEST_FREQ": str(STEPS),
        "SAVE_FREQ": "0",
        "CKPT_DIR": str(tmp_path / "grpo"),
        **(env or {}),
    }
    overrides = [*grpo_cpu_overrides(n_slots), f"trainer.total_training_steps={STEPS}", *extra]
    out = run_example("run_tars_qwen7b.sh", env, *overrides, timeout=1200)  # ~150 s alone; room for a busy machine
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    steps = step_metrics(log)
    assert sorted(steps) == list(range(STEPS + 1)), (sorted(steps), log[-3000:])
    print(
        {s: {k: v for k, v in steps[s].items() if k.startswith(("tars/", "critic/score", "val-core/"))} for s in steps}
    )

    scored_by_rm = 0  # responses whose helpfulness the served RM scored (harmless, ambiguous)
    for step in range(1, STEPS + 1):
        m = steps[step]
        counts = {t: m[f"tars/{t}/count"] for t in PROMPT_TYPES if f"tars/{t}/count" in m}
        assert sum(counts.values()) == TRAIN_BATCH * N_ROLLOUTS, counts  # every response scored, with its type
        assert "tars/unscored/count" not in m
        for t in counts:
            assert 0.0 <= m[f"tars/{t}/reward/min"] <= m[f"tars/{t}/reward/mean"] <= m[f"tars/{t}/reward/max"] <= 1
            if t == "harmful":
                assert 0.0 <= m["tars/harmful/safety/mean"] <= 1.0 and "tars/harmful/helpfulness/mean" not in m
            else:
                assert 0.0 < m[f"tars/{t}/helpfulness/mean"] < 1.0 and f"tars/{t}/safety/mean" not in m
                scored_by_rm += int(counts[t])
    assert {t for s in range(1, STEPS + 1) for t in PROMPT_TYPES if f"tars/{t}/count" in steps[s]} == set(PROMPT_TYPES)

    # Validation (before training and at the last step) is scored on the colocated path too.
    val = pd.read_parquet(data / "val.parquet")
    val_types = [info["prompt_type"] for info in val["extra_info"]]
    for step in (0, STEPS):
        assert any(k.startswith("val-core/") and k.endswith("/reward/mean@1") for k in steps[step]), steps[step]
    scored_by_rm += 2 * sum(t != "harmful" for t in val_types)

    # verl's served RM really answered: every helpfulness score came through its /classify, no more, no less.
    requests = [json.loads(line) for line in request_log.read_text().splitlines()]
    assert requests and all(r["path"] == "/classify" for r in requests)
    assert sum(r["inputs"] for r in requests) == scored_by_rm, (len(requests), scored_by_rm)
    # The guard over HTTP scored the harmful ones (answers, and reasonings where there were any).
    harmful = sum(int(steps[s].get("tars/harmful/count", 0)) for s in range(1, STEPS + 1))
    harmful += 2 * sum(t == "harmful" for t in val_types)
    guard_calls = [p for p, body in server.requests if p == "/v1/chat/completions"]
    assert len(guard_calls) >= harmful > 0
    return steps, log


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_open_preset_with_verl_serving_the_reward_model(data, tiny_dir, tmp_path, server):
    """Colocated (the launch scripts' default): verl builds the reward batch, the tars trainer adds the row fields.
    The guard's URL carries a password: the guard receives it (Basic), no output shows it."""
    password = "pw-grpo-guard-3141592"
    guard_url = server.url.replace("http://", f"http://guard:{password}@") + "/v1"
    _, log = run_open_preset_with_served_rm(data, tiny_dir, tmp_path, server, guard_url=guard_url)
    assert "Basic " + base64.b64encode(f"guard:{password}".encode()).decode() in server.auth_headers
    # verl's TaskRunner printed the resolved config, the guard URL in it redacted
    assert f"http://***@{server.url.removeprefix('http://')}/v1" in log
    for where, text in (("stdout/stderr", log), ("files", written_text(tmp_path))):
        assert not leaked(text, password, "guard"), where


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_open_preset_with_the_reward_model_in_its_own_pool(data, tiny_dir, tmp_path, server):
    """Streaming: the RM has its own resource pool, so the agent loop scores each response as it finishes."""
    key = "sk-planted-grpo-2718281828"
    server.echo_auth = True  # the guard quotes the Authorization header in its replies
    _, log = run_open_preset_with_served_rm(
        data,
        tiny_dir,
        tmp_path,
        server,
        "reward.reward_model.enable_resource_pool=True",
        "reward.reward_model.n_gpus_per_node=1",
        "reward.reward_model.nnodes=1",
        "reward.tars.safety.api_key_env=TARS_PLANTED_GUARD_KEY",
        n_slots=2,
        env={"TARS_PLANTED_GUARD_KEY": key},
    )
    assert f"Bearer {key}" in server.auth_headers  # forwarded to the reward workers, and sent
    for where, text in (("stdout/stderr", log), ("files", written_text(tmp_path))):
        assert not leaked(text, key), where
