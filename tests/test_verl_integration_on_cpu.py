"""TARS inside a verl deployment of one's own: verl's own ``ppo_trainer`` and entry point plus the overrides
``python -m tars_verl.overrides`` prints (docs/verl_integration.md).

- The overrides, composed onto verl's ``ppo_trainer`` as ``verl.trainer.main_ppo`` composes it, give exactly the
  config the launch scripts run (with their other settings added): one source, no copy that can drift.
- ``--runtime-env`` hands the values of what the reward config reads to Ray through a pipe, never a terminal.
- A tiny GRPO run through ``python -m verl.trainer.main_ppo`` with verl's own ``ppo_trainer`` plus exactly those
  overrides (and the CPU test settings the other GRPO tests use), submitted with ``ray job submit`` to a Ray head
  and a second node started on this machine: the reward workers run on the second node, reach the guard over HTTP
  with a key given only to the submitting shell, score every response per prompt type; no log or file of the run
  holds the key.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pandas as pd
import pytest
from conftest import ROOT
from test_grpo_on_cpu import step_metrics, write_tiny_mix
from test_launch_settings_on_cpu import case_env, commands, differences, grpo_config

from tars_verl.overrides import additions, tars_overrides
from tars_verl.reward.prompt_type import PROMPT_TYPES
from tars_verl.testing.cpu_platform import cpu_env, grpo_cpu_overrides

PRESETS = ["paper", "open", "tiny_cpu"]


def compose_verl_ppo_trainer(overrides: list[str]) -> dict:
    """verl's own ``ppo_trainer`` with ``overrides``, as ``python -m verl.trainer.main_ppo`` composes it
    (``@hydra.main(config_path="config", config_name="ppo_trainer")`` in verl/trainer/main_ppo.py), resolved."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="verl.trainer.config", version_base=None):
            return OmegaConf.to_container(compose(config_name="ppo_trainer", overrides=overrides), resolve=True)
    finally:
        GlobalHydra.instance().clear()


def recipe_settings() -> list[str]:
    """tars_grpo_recipe.yaml's own settings (the paper's GRPO hyperparameters) as overrides."""
    from importlib import resources

    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(
        OmegaConf.create((resources.files("tars_verl.config") / "tars_grpo_recipe.yaml").read_text()), resolve=False
    )
    assert raw["defaults"] == ["ppo_trainer", "tars_additions", "_self_"]
    raw.pop("defaults"), raw.pop("hydra")
    settings = [f"{k}={v}" for k, v in _leaves(raw)]
    # What TARS adds lives in tars_additions.yaml (so the overrides carry it); the recipe holds GRPO settings only.
    assert not [s for s in settings if s.startswith(("reward.", "trainer.v1."))]
    return settings


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("preset", PRESETS)
def test_the_overrides_on_verls_ppo_trainer_give_the_launch_scripts_config(preset, tmp_path, monkeypatch):
    """ppo_trainer + recipe settings + the launch script's per-cluster overrides + the printed TARS overrides (last,
    so that theirs win) == what the launch script runs. A launch-script value that drifts from the printed one (the
    served-RM function, RM_PATH's default, a preset key) or a printed override verl's config rejects fails here."""
    for name, value in {"TARS_TINY_DIR": "/tiny", "TARS_GUARD_URL": "http://guard:8001/v1"}.items():
        monkeypatch.setenv(name, value)
    script = "run_tars_qwen7b.sh"
    out = subprocess.run(
        ["bash", os.path.join(ROOT, "examples", script), "--print-cmd"],
        env=case_env(str(tmp_path), {"TARS_PRESET": preset, "SFT_MODEL_PATH": "org/warm"}),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    [launch] = [g for g in map(grpo_config, commands(out.stdout)) if g]
    name, launch_overrides, _ = launch
    from omegaconf import OmegaConf

    from tars_verl.config import compose

    launched = OmegaConf.to_container(compose(name, launch_overrides), resolve=True)
    printed = [o.text for o in tars_overrides(preset)]
    per_cluster = [o for o in launch_overrides if not o.startswith("tars@reward.tars=")]
    own = compose_verl_ppo_trainer([*recipe_settings(), *per_cluster, *printed])
    assert differences(launched, own) == []
    assert own["reward"]["reward_manager"]["name"] == "tars" and own["trainer"]["v1"]["trainer_mode"] == "tars"
    assert own["reward"]["reward_model"]["enable"] is (preset != "tiny_cpu")


def test_every_override_is_read_from_tars_additions_and_documented():
    defaults, body = additions()
    assert defaults == [("tars@reward.tars", "paper")]
    keys = {"hydra.searchpath", "tars@reward.tars", *(k for k, _ in body)}
    served = {o.key for o in tars_overrides("open")} - keys
    assert served == {
        "reward.reward_model.enable",
        "reward.reward_model.model_path",
        "reward.reward_model.rollout.name",
        "reward.custom_reward_function.path",
        "reward.custom_reward_function.name",
    }
    assert {o.key for o in tars_overrides("tiny_cpu")} == keys  # no served RM in this preset: none of those
    doc = open(os.path.join(ROOT, "docs", "verl_integration.md")).read()
    for key in keys | served:
        assert re.search(rf"^\| `\+?{re.escape(key)}[=`]", doc, re.M) or f", `{key}=" in doc, key  # a table row
    # A scorer swap that removes the served RM removes its overrides; the swap itself is passed on.
    swapped = tars_overrides("open", ["tars_scorer@reward.tars.helpfulness=llm_judge"])
    assert not {o.key for o in swapped} & served and swapped[-1].text.endswith("=llm_judge")


def run_overrides(*args, env=None, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tars_verl.overrides", *args],
        env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_the_printed_bash_array_pastes_back_as_the_same_overrides():
    printed = run_overrides("--preset", "open")
    assert printed.returncode == 0, printed.stderr
    assert "TARS_GUARD_MODEL, TARS_GUARD_URL" in printed.stdout  # what the workers read, by name
    pasted = subprocess.run(
        ["bash", "-c", printed.stdout + '\nprintf "%s\\n" "${TARS_OVERRIDES[@]}"'], capture_output=True, text=True
    )
    lines = run_overrides("--preset", "open", "--format", "lines")
    assert pasted.stdout == lines.stdout and lines.stdout.splitlines() == [o.text for o in tars_overrides("open")]


def test_runtime_env_goes_to_a_pipe_never_a_terminal():
    secret = "sk-runtime-env-" + "z" * 10
    extra = ["tars_scorer@reward.tars.safety=llama_guard3", "reward.tars.safety.api_key_env=TARS_TEST_GUARD_KEY"]
    env = {"TARS_TEST_GUARD_KEY": secret, "TARS_GUARD_URL": "http://10.0.0.7:8001/v1"}
    piped = run_overrides("--preset", "tiny_cpu", "--runtime-env", *extra, env=env)
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["env_vars"] == {
        "TARS_TEST_GUARD_KEY": secret,
        "TARS_GUARD_URL": "http://10.0.0.7:8001/v1",
        **({"TARS_TINY_DIR": os.environ["TARS_TINY_DIR"]} if os.environ.get("TARS_TINY_DIR") else {}),
    }
    import pty

    leader, follower = pty.openpty()
    shown = ""
    try:
        tty = run_overrides("--preset", "tiny_cpu", "--runtime-env", *extra, env=env, stdout=follower)
    finally:
        os.close(follower)
        with contextlib.suppress(OSError):  # EIO: nothing was written to the terminal
            shown = os.read(leader, 65536).decode()
        os.close(leader)
    assert tty.returncode == 2 and "through a pipe" in tty.stderr and secret not in tty.stderr + shown
    unset = run_overrides("--preset", "tiny_cpu", "--runtime-env", *extra, env={"TARS_TEST_GUARD_KEY": ""})
    assert unset.returncode != 0 and "TARS_TEST_GUARD_KEY not set here" in unset.stderr


# -- two Ray nodes on this machine ------------------------------------------------------------------------------------
# Isolated from every other Ray user of the machine: its own --temp-dir (Ray writes the cluster's address file,
# ray_current_cluster, there and not in /tmp/ray, so another process's ray.init() never finds this cluster), its own
# ports, RAY_ADDRESS only in its own subprocesses, and it is stopped through the PIDs it started (never `ray stop`).
SECRET_NAME = "TARS_GUARD_API_KEY"
SETTING_NAMES = ("TARS_GUARD_URL", "TARS_GUARD_MODEL", "TARS_TINY_DIR")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_env() -> dict[str, str]:
    """What every node starts with: the CPU test platform, no TARS setting or secret, no Ray address."""
    # Ray's single-machine switch (tests/conftest.py sets it for this process) refuses a second node.
    single = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    env = {k: v for k, v in os.environ.items() if k not in (SECRET_NAME, *SETTING_NAMES, "RAY_ADDRESS", single)}
    env.pop("CUDA_VISIBLE_DEVICES", None)  # unset, not empty: Ray refuses the GPU slot otherwise
    env.update({k: v for k, v in cpu_env().items() if k != single})
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
        RAY_AUTH_MODE="disabled",  # Ray 2.60 turns token auth on for `ray start --head`; not this test's subject
        RAY_LOGGER_LEVEL="warning",  # docs/multinode.md: else Ray's runtime-env agent logs the env's values
        RAY_USAGE_STATS_ENABLED="0",
        # Ray's memory monitor kills workers when the MACHINE is at 95% of its memory, whoever uses it: on a shared
        # CI machine that can be this job's supervisor. The kernel's OOM killer still guards the machine.
        RAY_memory_monitor_refresh_ms="0",
    )
    return env


def ray_cli() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


def node_ports(temp_dir: str) -> list[str]:
    return [
        f"--temp-dir={temp_dir}",
        "--node-ip-address=127.0.0.1",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        "--min-worker-port=0",  # 0: the OS picks each worker's port
        "--max-worker-port=0",
        "--object-store-memory=100000000",
        "--disable-usage-stats",
        "--block",  # stays in the foreground: ending it ends the node's processes
    ]


class NodeExited(AssertionError):
    pass


def wait_for(what: str, check, procs, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                with open(p.log_path) as f:
                    tail = f.read()[-3000:]
                raise NodeExited(f"{what}: `ray start` exited with {p.returncode}; its output ends:\n{tail}")
        with contextlib.suppress(Exception):
            result = check()
            if result:
                return result
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def state(dashboard: str, kind: str, **filters) -> list[dict]:
    """Ray's state API (``ray list <kind>``) through HTTP. Kept in memory: actor and job records carry the runtime
    env, values included (docs/multinode.md), so they are never printed."""
    query = "&".join(
        ["limit=1000&detail=true"]
        + [f"filter_keys={k}&filter_predicates=%3D&filter_values={v}" for k, v in filters.items()]
    )
    with NO_PROXY.open(f"{dashboard}/api/v0/{kind}?{query}", timeout=30) as reply:
        return json.loads(reply.read())["data"]["result"]["result"]


def processes_under(temp_dir: str) -> list[int]:
    """PIDs of the processes started for this cluster: every one names the cluster's temp dir on its command line."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as f:
                if temp_dir.encode() in f.read():
                    pids.append(int(entry))
    return pids


def start_node(args: list[str], env: dict, log_path) -> subprocess.Popen:
    with open(log_path, "w") as out:  # the child keeps its own handle
        proc = subprocess.Popen(
            [ray_cli(), "start", *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    proc.log_path = log_path
    return proc


def end_node(proc: subprocess.Popen) -> None:
    """`ray start --block` ends its node's processes on SIGTERM (they also die with it: Ray's fate sharing); its
    process group, which is its own (start_new_session), is killed after a grace period in any case."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(60)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def alive_nodes(dashboard: str, count: int) -> list[dict] | None:
    nodes = [n for n in state(dashboard, "nodes") if n["state"] == "ALIVE"]
    return nodes if len(nodes) == count else None


def start_two_nodes(temp_dir: str, env: dict, log_dir, attempt: int, procs: list) -> tuple[str, list[dict]]:
    """One try: the head, ready when its raylet is registered (not only its dashboard: `ray start` still exits if
    the raylet misses Ray's 30 s), then the second node. Raises NodeExited if either `ray start` exits."""
    gcs, dashboard_port = free_port(), free_port()
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    head = ["--head", f"--port={gcs}", "--num-cpus=0", "--num-gpus=0", "--include-dashboard=true"]
    head += [
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={free_port()}",
    ]
    mine = [start_node([*head, *node_ports(temp_dir)], env, log_dir / f"ray_head.{attempt}.log")]
    procs += mine  # for the clean-up; this try watches its own only
    wait_for("the Ray head", lambda: alive_nodes(dashboard, 1), mine)
    node2 = [f"--address=127.0.0.1:{gcs}", "--num-cpus=32", "--num-gpus=1", '--resources={"tars_node2": 1}']
    mine.append(start_node([*node2, *node_ports(temp_dir)], env, log_dir / f"ray_node2.{attempt}.log"))
    procs.append(mine[-1])
    return dashboard, wait_for("the second Ray node", lambda: alive_nodes(dashboard, 2), mine)


@contextlib.contextmanager
def two_node_cluster(log_dir, secret: str):
    """A head with no CPUs or GPUs (the job's driver runs there, nothing else can) and a second node with 32 CPUs
    and one GPU slot for the CPU platform: every worker verl starts, reward workers included, runs on node 2.

    Ray gives a new raylet 30 s to register with the GCS (hard-coded in ray/_private/node.py), which a machine busy
    with other work can miss; `ray start` then exits, and the cluster is started again (3 tries). On exit the nodes
    are stopped, every file Ray wrote is searched for ``secret`` (``cluster["files_with_secret"]``), and the
    cluster's temp dir is removed."""
    temp_dir = tempfile.mkdtemp(prefix="tars_ray_", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = node_env()
    procs: list[subprocess.Popen] = []
    cluster = {"temp_dir": temp_dir, "env": env}
    try:
        for attempt in range(1, 4):
            try:
                dashboard, nodes = start_two_nodes(temp_dir, env, log_dir, attempt, procs)
                break
            except NodeExited:
                for p in reversed(procs):
                    end_node(p)
                if attempt == 3:
                    raise
        cluster["dashboard"] = dashboard
        cluster["head"] = next(n["node_id"] for n in nodes if n["is_head_node"])
        cluster["second"] = next(n["node_id"] for n in nodes if "tars_node2" in n["resources_total"])
        yield cluster
    finally:
        for p in reversed(procs):  # the second node first, then the head
            end_node(p)
        deadline = time.monotonic() + 60
        while (left := processes_under(temp_dir)) and time.monotonic() < deadline:
            for pid in left:  # ours: each names this cluster's own temp dir
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(1)
        cluster["files_with_secret"] = files_holding(secret, temp_dir)  # complete now: every node has stopped
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not processes_under(temp_dir), "processes of the test's Ray cluster are still running"


GUARD = ["tars_scorer@reward.tars.safety=llama_guard3", f"reward.tars.safety.api_key_env={SECRET_NAME}"]
BATCH, N = 4, 2


def tiny_run_settings(data, tiny_dir, out_dir) -> list[str]:
    """The run's own settings on verl's ppo_trainer: tiny data, model and sizes (as the other CPU GRPO tests)."""
    return [
        f"data.train_files={data / 'train4.parquet'}",
        f"data.val_files={data / 'tars' / 'val.parquet'}",
        f"data.train_batch_size={BATCH}",
        "data.max_prompt_length=128",
        "data.max_response_length=24",
        "data.shuffle=False",
        f"actor_rollout_ref.model.path={tiny_dir}/policy",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={BATCH}",
        "actor_rollout_ref.actor.use_dynamic_bsz=True",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=304",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "actor_rollout_ref.rollout.name=tars_hf",
        f"actor_rollout_ref.rollout.n={N}",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "algorithm.adv_estimator=grpo",
        "trainer.nnodes=1",
        "trainer.n_gpus_per_node=1",
        "trainer.total_training_steps=1",
        "trainer.val_before_train=False",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.logger=[console]",
        f"trainer.default_local_dir={out_dir / 'ckpt'}",
        f"hydra.run.dir={out_dir / 'hydra'}",
        # TransferQueue puts its storage actor on the alive node with the smallest id, without fallback
        # (transfer_queue/utils/common.py): the head has no CPU for it, so it is pinned to the second node.
        "+transfer_queue.backend.SimpleStorage.required_node_resource=tars_node2",
    ]


def files_holding(secret: str, *roots) -> list[str]:
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                with contextlib.suppress(OSError), open(path, "rb") as f:
                    if secret.encode() in f.read():
                        found.append(path)
    return found


def four_prompts(root) -> None:
    """The one step's 4 prompts, in this order (data.shuffle=False): 2 harmful (scored by the guard over HTTP),
    1 harmless and 1 ambiguous (the tiny reward model), so that every path of the reward runs."""
    mix = pd.read_parquet(root / "tars" / "train.parquet")
    types = [info["prompt_type"] for info in mix["extra_info"]]
    order: list[int] = []
    for wanted in ("harmful", "harmful", "harmless", "ambiguous"):
        order.append(next(i for i, t in enumerate(types) if t == wanted and i not in order))
    mix.iloc[order].to_parquet(root / "train4.parquet")


def submit(cluster, server, secret, entrypoint, tiny_dir) -> subprocess.CompletedProcess:
    """`ray job submit` as docs/verl_integration.md shows it, from a shell that alone holds the key and settings."""
    submitter = {
        **cluster["env"],
        SECRET_NAME: secret,
        "TARS_GUARD_URL": f"{server.url}/v1",
        "TARS_GUARD_MODEL": "llama-guard-fake",
        "TARS_TINY_DIR": tiny_dir,
    }
    runtime_env = shlex.join(
        [sys.executable, "-m", "tars_verl.overrides", "--preset", "tiny_cpu", "--runtime-env", *GUARD]
    )
    ray_submit = shlex.join([ray_cli(), "job", "submit", f"--address={cluster['dashboard']}"])
    command = f"{ray_submit} --runtime-env <({runtime_env}) -- {shlex.join(entrypoint)}"
    return subprocess.run(["bash", "-c", command], env=submitter, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_verl_main_ppo_as_a_ray_job_on_two_nodes(tmp_path, tiny_dir, server):
    started = time.monotonic()
    secret = "sk-guard-" + "k7" * 12
    write_tiny_mix(tmp_path)
    four_prompts(tmp_path)
    printed = run_overrides("--preset", "tiny_cpu", "--format", "lines", *GUARD)
    assert printed.returncode == 0, printed.stderr
    # verl's own entry point and ppo_trainer config: the run's settings, the CPU test platform's (minus the Ray
    # resources, which the cluster's nodes declare: ray.init takes none when it joins a cluster), and exactly the
    # printed TARS overrides.
    cpu = [
        o
        for o in grpo_cpu_overrides()
        if not o.startswith(("+ray_kwargs.ray_init.num_cpus", "+ray_kwargs.ray_init.num_gpus"))
    ]
    entrypoint = [
        sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        *tiny_run_settings(tmp_path, tiny_dir, tmp_path),
        *cpu,
        *printed.stdout.splitlines(),
    ]
    logs = tmp_path / "logs"
    logs.mkdir()
    with two_node_cluster(logs, secret) as cluster:
        job = submit(cluster, server, secret, entrypoint, tiny_dir)
        log = job.stdout + job.stderr
        (logs / "submit.log").write_text(log)
        assert job.returncode == 0, log[-6000:]
        workers = state(cluster["dashboard"], "actors", class_name="RewardLoopWorker")
        [record] = [j for j in state(cluster["dashboard"], "jobs") if j.get("type") == "SUBMISSION"]
        ran_on = {"reward workers": {w["node_id"] for w in workers}, "driver": record["driver_node_id"]}
    # Searched after the nodes stopped, so that every log is complete: Ray's session logs of both nodes (in the
    # cluster's temp dir), the job's output (hydra folder, console), the nodes' own output.
    leaks = cluster["files_with_secret"] + files_holding(secret, tmp_path)
    print(f"two-node GRPO job, cluster start to stop: {time.monotonic() - started:.0f} s")

    # Where it ran: the driver on the head, every reward worker on the second node.
    assert workers and ran_on == {"reward workers": {cluster["second"]}, "driver": cluster["head"]}, ran_on
    # Every response scored by the tars manager, per prompt type; the harmful ones by the guard over HTTP, each
    # request with the key that only the submitting shell had.
    steps = step_metrics(log)
    assert sorted(steps) == [1], (sorted(steps), log[-3000:])
    m = steps[1]
    counts = {t: m[f"tars/{t}/count"] for t in PROMPT_TYPES if f"tars/{t}/count" in m}
    assert counts == {"harmful": 2 * N, "harmless": N, "ambiguous": N}, counts
    assert "tars/unscored/count" not in m
    for t in counts:
        assert 0.0 <= m[f"tars/{t}/reward/min"] <= m[f"tars/{t}/reward/mean"] <= m[f"tars/{t}/reward/max"] <= 1.0
    assert 0.0 <= m["tars/harmful/safety/mean"] <= 1.0 and "tars/harmful/helpfulness/mean" not in m
    assert "tars/harmless/helpfulness/mean" in m and "tars/ambiguous/safety/mean" not in m
    guard = [auth for (path, _), auth in zip(server.requests, server.auth_headers) if path == "/v1/chat/completions"]
    assert len(guard) >= 2 * N and set(guard) == {f"Bearer {secret}"}
    # No log or file of the run holds the key.
    in_output = secret in log  # a bool, so that a failure message never shows the key itself
    assert leaks == [] and not in_output, (leaks, in_output)


def test_the_tars_trainer_stops_at_start_when_the_reward_config_cannot_be_built(monkeypatch):
    """A scorer's key missing where the workers run once failed only inside each reward worker, and verl 0.9.1 waits
    on a dead reward worker forever (seen in the two-node run without the runtime env); the trainer, built in verl's
    TaskRunner before any worker, now stops the run with the reward config's own message."""
    from tars_verl.config import compose
    from tars_verl.errors import ScorerConfigError
    from tars_verl.training.trainer import TarsPPOTrainer

    monkeypatch.delenv(SECRET_NAME, raising=False)
    cfg = compose("tars_grpo", ["tars@reward.tars=tiny_cpu", *GUARD])
    with pytest.raises(ScorerConfigError, match=f"reward.tars.safety: guard_chat: environment variable {SECRET_NAME}"):
        TarsPPOTrainer(cfg)
