"""Each workaround in tars_verl/verl_workarounds.py against the INSTALLED verl.

Two kinds of test per workaround: the verl lines, names and signatures it relies on are still there (a verl
upgrade fails here with a message naming the workaround and what to re-read), and what it does, driven through
verl's own code where that runs on CPU. A guard at the end keeps private verl names out of the rest of tars_verl.
"""

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib
import torch
import verl
from omegaconf import OmegaConf
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tars_verl import verl_workarounds as vw
from tars_verl.verl_workarounds import WORKAROUNDS, VerlChanged

ROOT = Path(__file__).resolve().parent.parent
VERL_ROOT = Path(verl.__file__).parent


def changed(name: str, what: str) -> str:
    w = WORKAROUNDS[name]
    return (
        f"verl changed under the tars_verl workaround {name!r} (tars_verl/verl_workarounds.py): {what}. "
        f"Re-read {w.relies_on()}, check what the workaround needs ({w.breaks_if}), then update it."
    )


def params(fn) -> list[str]:
    import inspect

    return list(inspect.signature(fn).parameters)


def source(obj) -> str:
    import inspect

    return inspect.getsource(obj)


# -- every workaround: version, cited lines, documentation --------------------------------------------------------
def test_installed_verl_is_the_one_the_workarounds_were_checked_against():
    pins = [
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("verl")
    ]
    assert len(pins) == 1 and SpecifierSet(re.sub(r"^verl(\[[^]]*\])?", "", pins[0])) == SpecifierSet(
        vw.VERL_SUPPORTED
    ), f"pyproject pins {pins}, tars_verl/verl_workarounds.py VERL_SUPPORTED says {vw.VERL_SUPPORTED}: make them agree"
    assert Version(verl.__version__) in SpecifierSet(vw.VERL_SUPPORTED), verl.__version__
    assert verl.__version__ == vw.VERL_CHECKED_VERSION, (
        f"verl {verl.__version__} is installed; every workaround ({', '.join(WORKAROUNDS)}) was checked against "
        f"verl {vw.VERL_CHECKED_VERSION}. Run this file, fix what it reports, then set VERL_CHECKED_VERSION."
    )


CITED = [(w.name, line) for w in WORKAROUNDS.values() for line in w.lines]


@pytest.mark.parametrize("name,line", CITED, ids=[f"{n}-{line}" for n, line in CITED])
def test_every_cited_verl_line_still_says_the_same(name, line):
    path = VERL_ROOT / line.path
    assert path.is_file(), changed(name, f"{line.path} no longer exists in verl")
    text = path.read_text().splitlines()
    found = text[line.line - 1].strip() if line.line <= len(text) else None
    if found != line.text:
        now_at = [i + 1 for i, t in enumerate(text) if t.strip() == line.text]
        where = f"that text is now at line(s) {now_at}" if now_at else "that text is gone"
        pytest.fail(changed(name, f"{line} reads {found!r}, expected {line.text!r} ({where})"))


def test_every_workaround_says_what_why_and_how_to_remove_it_and_its_call_sites_use_it():
    names = {"sft_early_stopping", "process_group_on_cpu", "rollout_adapter_registry", "colocated_reward_row_fields"}
    names |= {"ray_init_env_forwarding", "served_rm_routing", "lazy_plugin_registration", "file_loaded_reward_manager"}
    assert set(WORKAROUNDS) == names
    for w in WORKAROUNDS.values():
        assert w.lacks and w.breaks_if and w.remove_when and w.lines and w.used_by, w.name
        assert f"\n{w.name} " in vw.__doc__, f"{w.name} is missing from the module docstring's table"
        for path in w.used_by:
            text = (ROOT / path).read_text()
            uses = "verl_workarounds" in text or w.name in text or "pkg://tars_verl.verl_plugin" in text
            assert uses, f"{path} is named as a call site of {w.name} but does not use tars_verl.verl_workarounds"


def test_a_run_time_check_names_the_workaround_the_verl_lines_and_the_installed_verl():
    msg = WORKAROUNDS["sft_early_stopping"].error("something moved")
    assert msg.startswith("something moved. The tars_verl workaround 'sft_early_stopping'")
    assert "verl/trainer/sft_trainer.py:422" in msg and f"installed verl is {verl.__version__}" in msg


# -- sft_early_stopping --------------------------------------------------------------------------------------------
def test_sft_early_stopping_shape():
    from verl.trainer.sft_trainer import SFTTrainer
    from verl.utils.checkpoint.checkpoint_handler import CheckpointHandler
    from verl.workers.engine_workers import TrainingWorker

    assert params(TrainingWorker.infer_batch) == ["self", "data"], changed("sft_early_stopping", "infer_batch")
    assert params(CheckpointHandler.save_checkpoint) == ["self", "step"], changed("sft_early_stopping", "save")
    assert params(SFTTrainer.__init__) == ["self", "config"], changed(
        "sft_early_stopping", f"SFTTrainer{params(SFTTrainer.__init__)} may take callbacks now: use them instead"
    )
    fit = source(SFTTrainer.fit)
    assert "finally:" not in fit and ".finish(" not in fit, changed(
        "sft_early_stopping", "fit() now cleans up after its loop, which StopSFTFit raised from save_checkpoint skips"
    )
    for attr in ("self.engine.is_mp_src_rank_with_outputs()", 'tu.get(output, "metrics")'):
        assert attr in fit, changed("sft_early_stopping", f"fit() no longer uses {attr}")


class StubEngine:
    def is_mp_src_rank_with_outputs(self):
        return True

    def get_data_parallel_rank(self):
        return 0

    def get_data_parallel_group(self):
        return None


class StubClient:
    """verl's TrainingWorker as fit() calls it: a loss per training step, the next given loss per validation."""

    def __init__(self, val_losses):
        self.val_losses = iter(val_losses)
        self.trained = 0

    def _out(self, loss):
        from verl.utils import tensordict_utils as tu

        return tu.get_tensordict({"x": torch.zeros(1)}, {"metrics": {"loss": loss}})

    def train_batch(self, data):
        self.trained += 1
        return self._out(1.0)

    def infer_batch(self, data):
        return self._out(next(self.val_losses))

    def start_profile(self):
        pass

    def step_profile(self):
        pass

    def stop_profile(self):
        pass


class StubCheckpoints:
    def __init__(self):
        self.saved = []

    def save_checkpoint(self, step):
        self.saved.append(step)


@pytest.fixture
def sft_trainer(monkeypatch):
    """verl's real SFTTrainer.fit on stub engine, worker and checkpoint handler (no model, no process group)."""
    from verl.trainer import sft_trainer as module

    monkeypatch.setattr(module, "aggressive_empty_cache", lambda **k: None)  # both ask a CUDA device
    monkeypatch.setattr(module, "log_gpu_memory_usage", lambda *a, **k: None)
    monkeypatch.setattr(torch.distributed, "barrier", lambda *a, **k: None)

    def build(val_losses, steps=5, test_freq=1, save_freq=1):
        t = object.__new__(module.SFTTrainer)
        t.config = OmegaConf.create(
            {
                "trainer": {"total_epochs": 1, "project_name": "p", "experiment_name": "e", "logger": "console"},
                "model": {"use_remove_padding": False},
                "data": {
                    "use_dynamic_bsz": False,
                    "max_token_len_per_gpu": 8,
                    "micro_batch_size_per_gpu": 1,
                    "pad_mode": "no_padding",
                },
            }
        )
        t.engine, t.training_client, t.ckpt_handler = StubEngine(), StubClient(val_losses), StubCheckpoints()
        t.resume_global_step, t.total_training_steps, t.steps_per_epoch = 0, steps, steps
        t.global_batch_size, t.device_name, t.rank = 1, "cpu", 0
        t.model_config = SimpleNamespace(tokenizer=SimpleNamespace(pad_token_id=0))
        t.train_sampler = SimpleNamespace(set_epoch=lambda epoch: None)
        t.train_dataloader = [{"input_ids": torch.ones(1, 4, dtype=torch.long)} for _ in range(steps)]
        t.val_dataloader = [{"input_ids": torch.ones(1, 4, dtype=torch.long)}]
        t._get_batch_seqlens = lambda data: [4]  # verl's all-gathers over a process group
        t.start_profile_step = t.end_profile_step = None
        t.test_freq, t.save_freq = test_freq, save_freq
        return t

    return build


def test_sft_early_stopping_ends_verls_loop_after_the_checkpoint_that_did_not_improve(sft_trainer, tmp_path):
    from tars_verl.training.sft import EarlyStopping

    trainer = sft_trainer([1.0, 0.5, 0.7, 0.4, 0.3])
    stopper = EarlyStopping(trainer, patience=1, min_delta=0.0, out_dir=str(tmp_path))
    stopped = vw.fit_sft(trainer)
    assert stopped and "best step 2" in stopped
    assert trainer.training_client.trained == 3 and trainer.ckpt_handler.saved == [1, 2, 3]  # nothing after step 3
    assert [h["val_loss"] for h in stopper.history] == pytest.approx([1.0, 0.5, 0.7])
    assert os.readlink(tmp_path / "best") == "global_step_2"


def test_sft_early_stopping_lets_verl_finish_while_the_loss_improves(sft_trainer, tmp_path):
    from tars_verl.training.sft import EarlyStopping

    trainer = sft_trainer([5.0, 4.0, 3.0, 2.0, 1.0])
    stopper = EarlyStopping(trainer, patience=1, min_delta=0.0, out_dir=str(tmp_path))
    assert vw.fit_sft(trainer) is None
    assert trainer.ckpt_handler.saved == [1, 2, 3, 4, 5] and stopper.best_step == 5


def test_sft_early_stopping_refuses_a_save_that_no_validation_came_before(sft_trainer):
    """What a verl that stops validating through infer_batch looks like: the first save raises, naming the cause."""
    trainer = sft_trainer([1.0, 1.0], test_freq=2, save_freq=1)
    vw.watch_sft_trainer(trainer, lambda loss: None, lambda step: None)
    with pytest.raises(VerlChanged, match=r"step 1 with no validation batch.*'sft_early_stopping'.*sft_trainer.py:422"):
        vw.fit_sft(trainer)


def test_sft_early_stopping_checks_names_and_signatures_when_installed(sft_trainer):
    trainer = sft_trainer([1.0])
    trainer.ckpt_handler = SimpleNamespace(save_checkpoint=lambda global_step: None)  # a renamed parameter
    with pytest.raises(VerlChanged, match=r"save_checkpoint.*lacks \['step'\].*sft_early_stopping"):
        vw.watch_sft_trainer(trainer, lambda loss: None, lambda step: None)
    del trainer.training_client
    with pytest.raises(VerlChanged, match="no attribute 'training_client'"):
        vw.watch_sft_trainer(trainer, lambda loss: None, lambda step: None)


# -- process_group_on_cpu ------------------------------------------------------------------------------------------
def test_process_group_on_cpu_shape():
    from verl.utils import distributed

    fn = distributed.initialize_global_process_group
    assert params(fn) == ["timeout_second"] and fn.__defaults__ == (36000,), changed("process_group_on_cpu", "timeout")
    src = source(fn)
    for needle in ('init_method=os.environ.get("DIST_INIT_METHOD", None)', "get_torch_device().set_device(local_rank)"):
        assert needle in src, changed("process_group_on_cpu", f"initialize_global_process_group lost {needle}")


PROCESS_GROUP_PROBE = """
import os, sys, torch.distributed as dist
from verl.utils.distributed import initialize_global_process_group, initialize_global_process_group_ray
from tars_verl import verl_workarounds as vw
tmp = sys.argv[1]
os.environ["DIST_INIT_METHOD"] = "file://" + tmp + "/verl?rank=0&world_size=1"  # verl passes no rank
try:
    initialize_global_process_group()
    print("VERL_OK")
except Exception as err:
    print("VERL_FAILED", "Duplicate device type" in str(err))
os.environ.update(WG_BACKEND="ray", DIST_INIT_METHOD="file://" + tmp + "/hook")
vw.init_ray_worker_process_group_on_cpu()
initialize_global_process_group_ray()  # verl's worker call: must leave the hook's group alone
print("HOOK", dist.get_backend(), dist.get_world_size())
dist.destroy_process_group()
os.environ["DIST_INIT_METHOD"] = "file://" + tmp + "/sft?rank=0&world_size=1"
vw.init_sft_process_group()
print("SFT", dist.get_backend())
dist.destroy_process_group()
"""


def test_process_group_on_cpu_starts_where_verls_own_call_fails(tmp_path):
    env = {
        **os.environ,
        "VERL_USE_EXTERNAL_MODULES": "tars_verl.testing.cpu_platform",
        "VERL_PLATFORM": "cpu",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29599",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    out = subprocess.run(
        [sys.executable, "-c", PROCESS_GROUP_PROBE, str(tmp_path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "VERL_OK" not in out.stdout, changed(
        "process_group_on_cpu", "verl's own initialize_global_process_group now works on CPU: remove the workaround"
    )
    assert "VERL_FAILED True" in out.stdout, out.stdout
    assert "HOOK gloo 1" in out.stdout and "SFT cpu:gloo\n" in out.stdout, out.stdout  # one cpu entry


def test_ray_worker_hook_leaves_other_processes_alone(monkeypatch):
    import torch.distributed as dist

    monkeypatch.delenv("WG_BACKEND", raising=False)  # Ray's task runner, reward and agent-loop workers
    vw.init_ray_worker_process_group_on_cpu()
    assert not dist.is_initialized()


# -- rollout_adapter_registry --------------------------------------------------------------------------------------
def test_rollout_adapter_registry_shape():
    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry

    registry = base._ROLLOUT_REGISTRY
    assert all(isinstance(k, tuple) and len(k) == 2 and isinstance(v, str) for k, v in registry.items()), changed(
        "rollout_adapter_registry", "_ROLLOUT_REGISTRY is no longer {(name, mode): 'module.Class'}"
    )
    assert params(base.get_rollout_class) == ["rollout_name", "mode"], changed("rollout_adapter_registry", "get")
    assert params(RolloutReplicaRegistry.register) == ["name", "loader"], changed("rollout_adapter_registry", "reg")
    hooks = [n for n in dir(base) if "regist" in n.lower() and not n.startswith("_")]
    assert not hooks, changed("rollout_adapter_registry", f"verl.workers.rollout.base now has {hooks}: use it")

    class Replica(RolloutReplica):
        async def launch_servers(self):
            pass

    replica = object.__new__(Replica)
    replica._server_address, replica._server_handle = "addr", "handle"
    assert (replica.server_address, replica.server_handle) == ("addr", "handle"), changed(
        "rollout_adapter_registry", "RolloutReplica.server_address/server_handle no longer read what tars_hf sets"
    )


def test_a_registered_adapter_is_what_verl_builds_and_is_listed_once_a_replica_exists():
    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    name = "tars_test_rollout"
    try:
        vw.register_rollout_adapter(name, "collections.OrderedDict")
        import collections

        assert base.get_rollout_class(name, "async") is collections.OrderedDict  # verl's own lookup
        assert name not in vw.registered_rollouts()  # no replica yet: verl could not start it
        RolloutReplicaRegistry.register(name, lambda: None)
        assert name in vw.registered_rollouts()
    finally:
        base._ROLLOUT_REGISTRY.pop((name, "async"), None)
        RolloutReplicaRegistry._registry.pop(name, None)


def test_the_tars_hf_testing_rollout_registers_both_halves():
    import tars_verl.testing.hf_rollout  # noqa: F401 - registers on import

    assert "tars_hf" in vw.registered_rollouts() and {"vllm", "sglang"} <= set(vw.registered_rollouts())


# -- colocated_reward_row_fields -----------------------------------------------------------------------------------
def test_colocated_reward_row_fields_shape():
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    from tars_verl.training.trainer import TarsPPOTrainer

    src = source(PPOTrainer._compute_reward_colocate)
    assert src.count("self.reward_loop_manager.") == 1, changed(
        "colocated_reward_row_fields", "_compute_reward_colocate uses reward_loop_manager other than for one call"
    )
    assert params(PPOTrainer._compute_reward_colocate) == ["self", "batch", "metrics"]
    assert params(PPOTrainer.step) == ["self", "metrics", "timing_raw"], changed("colocated_reward_row_fields", "step")
    # the tars trainer overrides verl's base methods directly: the sync trainer must not define its own
    assert TarsPPOTrainer.__mro__[1] is PPOTrainerSync
    for name in ("_compute_reward_colocate", "step"):
        assert name not in PPOTrainerSync.__dict__, changed("colocated_reward_row_fields", f"PPOTrainerSync.{name}")


def test_the_colocated_stand_in_refuses_what_verl_did_not_use():
    stand_in = vw._RewardManagerWithRowFields(SimpleNamespace(reward_loop_worker_handles=None), {})
    with pytest.raises(VerlChanged, match=r"reward_loop_manager.reward_loop_worker_handles.*colocated_reward_row"):
        stand_in.reward_loop_worker_handles  # noqa: B018 - the attribute access is the test


# -- ray_init_env_forwarding ---------------------------------------------------------------------------------------
def test_ray_init_env_forwarding_shape():
    import ray
    from verl.trainer import main_ppo

    assert main_ppo.ray is ray, changed("ray_init_env_forwarding", "main_ppo no longer uses the ray module")
    assert params(main_ppo.main.__wrapped__) == ["config"], changed("ray_init_env_forwarding", "main.__wrapped__")
    assert source(main_ppo.run_ppo).count("ray.init(**") == 1, changed("ray_init_env_forwarding", "run_ppo's ray.init")


def test_run_verl_main_ppo_forwards_env_through_the_ray_init_verl_calls(monkeypatch, capsys):
    import ray
    from verl.trainer import main_ppo

    calls = []
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    fake_recorder = ray.init

    def verl_main(config):  # stands for verl's main: ray.init with verl's own env vars, through main_ppo's ray
        main_ppo.ray.init(num_cpus=1, runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "true"}})

    monkeypatch.setattr(main_ppo.main, "__wrapped__", verl_main)
    vw.run_verl_main_ppo(OmegaConf.create({}), {"TARS_TEST_SECRET": "s3cret"})
    assert calls == [
        {"num_cpus": 1, "runtime_env": {"env_vars": {"TOKENIZERS_PARALLELISM": "true", "TARS_TEST_SECRET": "s3cret"}}}
    ]
    assert ray.init is fake_recorder  # put back
    out = capsys.readouterr().out
    assert "TARS_TEST_SECRET" in out and "s3cret" not in out


def test_run_verl_main_ppo_stops_when_verl_no_longer_calls_ray_init_through_the_module(monkeypatch):
    from verl.trainer import main_ppo

    monkeypatch.setattr(main_ppo, "ray", SimpleNamespace(init=lambda **kw: None))  # as after `from ray import init`
    with pytest.raises(VerlChanged, match=r"ray_init_env_forwarding.*main_ppo.py:74"):
        vw.run_verl_main_ppo(OmegaConf.create({}), {"X": "1"})


# -- served_rm_routing ---------------------------------------------------------------------------------------------
def test_served_rm_routing_shape_and_routes_match_verls_router():
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    disrm = source(RewardLoopWorker.compute_score_disrm)
    for backend in ("vllm", "sglang"):
        route = vw.VERL_RM_ROUTES[backend].lstrip("/")
        block = disrm.split(f'engine_name == "{backend}"')[1].split("elif")[0]
        assert f'"{route}"' in block, changed("served_rm_routing", f"verl's {backend} RM route is not {route}")


def test_served_rm_check_refuses_the_bypass_and_names_the_fix():
    from tars_verl.scorers import ScorerConfigError

    reward = OmegaConf.create(
        {"reward_model": {"enable": True, "rollout": {"name": "vllm"}}, "custom_reward_function": {"path": None}}
    )
    with pytest.raises(ScorerConfigError, match=re.escape(vw.SERVED_RM_CUSTOM_REWARD_FUNCTION["path"])):
        vw.check_served_rm_routing(reward)
    fixed = OmegaConf.merge(
        reward, OmegaConf.from_dotlist([o.removeprefix("reward.") for o in vw.served_rm_overrides()])
    )
    vw.check_served_rm_routing(fixed)
    vw.check_served_rm_routing(OmegaConf.create({"reward_model": {"enable": False}}))  # verl serves none: nothing to do


def test_the_launch_script_sets_the_same_custom_reward_function():
    script = (ROOT / "examples" / "lib" / "launch.sh").read_text().split()
    for override in vw.served_rm_overrides():
        assert override in script, f"examples/lib/launch.sh lost {override} (workaround served_rm_routing)"


def test_the_marker_reward_function_is_the_plugins_and_refuses_to_score():
    from tars_verl import verl_plugin

    name = vw.SERVED_RM_CUSTOM_REWARD_FUNCTION["name"]
    assert getattr(verl_plugin, name) is vw.served_rm_marker_compute_score
    with pytest.raises(RuntimeError, match="reward.reward_manager.name=tars"):
        getattr(verl_plugin, name)("src", "answer", "", {})


# -- lazy_plugin_registration --------------------------------------------------------------------------------------
def test_lazy_registration_runs_ours_right_after_the_target_and_then_leaves(tmp_path, monkeypatch):
    import verl.experimental.reward_loop.reward_manager  # noqa: F401 - the plug-in's own targets, so its
    import verl.trainer.ppo.v1  # noqa: F401 - finder has finished and left sys.meta_path

    assert not [f for f in sys.meta_path if getattr(f, "tars_after_import", False)]
    (tmp_path / "tars_fake_target.py").write_text("order = ['target']\n")
    (tmp_path / "tars_fake_ours.py").write_text("import tars_fake_target\ntars_fake_target.order.append('ours')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    try:
        vw.register_when_verl_imports({"tars_fake_target": "tars_fake_ours"})
        assert "tars_fake_ours" not in sys.modules  # nothing imported before the target is
        import tars_fake_target

        assert tars_fake_target.order == ["target", "ours"]
        assert not [f for f in sys.meta_path if getattr(f, "tars_after_import", False)]
        del sys.modules["tars_fake_ours"]
        vw.register_when_verl_imports({"tars_fake_target": "tars_fake_ours"})  # already imported: at once
        assert tars_fake_target.order == ["target", "ours", "ours"]
    finally:
        sys.modules.pop("tars_fake_target", None)
        sys.modules.pop("tars_fake_ours", None)


def test_tars_is_in_the_registries_verl_looks_names_up_in():
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
    from verl.trainer.ppo.v1 import get_trainer_cls

    from tars_verl.reward.manager import TarsRewardManager
    from tars_verl.training.trainer import TarsPPOTrainer

    assert get_reward_manager_cls("tars") is TarsRewardManager and get_trainer_cls("tars") is TarsPPOTrainer


# -- file_loaded_reward_manager ------------------------------------------------------------------------------------
def test_verl_loads_a_file_path_under_a_new_module_name_and_tars_hands_out_one_class(tmp_path):

    from verl.utils.import_utils import load_extern_object, load_module

    import tars_verl.reward.manager as rm

    (tmp_path / "plain.py").write_text("X = 1\n")
    assert load_module(str(tmp_path / "plain.py")).__name__.startswith("custom_module_"), changed(
        "file_loaded_reward_manager", "verl now loads files under another name"
    )
    # Both ways a config can name the manager (by package or by file) give the one class in verl's registry.
    for path in ("pkg://tars_verl.reward.manager", rm.__file__):
        assert load_extern_object(path, "TarsRewardManager") is rm.TarsRewardManager, path
    # The branch compares with the module's import name: it must name the file it is in.
    assert f'if __name__ != "{rm.__name__}":' in Path(rm.__file__).read_text(), "file_loaded_reward_manager"


# -- nothing private from verl outside tars_verl/verl_workarounds.py ----------------------------------------------
PRIVATE_VERL_USE = re.compile(
    r"from verl[\w.]* import [^\n]*\b_[A-Za-z]"  # a private verl name imported
    r"|\bverl[\w.]*\._[A-Za-z]"  # or reached through a verl module
    r"|_ROLLOUT_REGISTRY|RolloutReplicaRegistry\._registry|\.__wrapped__|sys\.meta_path\s*[.\[=]"
    r"|\bray\.init\s*=|\.(infer_batch|save_checkpoint|compute_rm_score|reward_loop_manager)\s*=[^=]"
)


def test_no_other_module_reaches_into_verl_privately():
    found = []
    for path in sorted((ROOT / "tars_verl").rglob("*.py")):
        if path.name == "verl_workarounds.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE_VERL_USE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "move these into tars_verl/verl_workarounds.py (one section per workaround):\n" + "\n".join(found)
