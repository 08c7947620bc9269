"""The ``verl.plugins`` entry point: light on ``import verl``, and ``tars`` still registered where verl looks."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import json, sys
import verl
out = {"modules": len(sys.modules), "reward_manager_loaded": "tars_verl.reward.manager" in sys.modules,
       "trainer_loaded": "tars_verl.training.trainer" in sys.modules}
if sys.argv[1] == "lookup":
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
    from verl.trainer.ppo.v1 import get_trainer_cls
    from tars_verl.reward.manager import TarsRewardManager
    from tars_verl.training.trainer import TarsPPOTrainer
    out["manager_is_real"] = get_reward_manager_cls("tars") is TarsRewardManager
    out["trainer_is_real"] = get_trainer_cls("tars") is TarsPPOTrainer
print("PROBE" + json.dumps(out))
"""


def probe(policy: str, mode: str = "count") -> dict:
    env = {
        **os.environ,
        "VERL_USE_EXTERNAL_PLUGINS": policy,
        "VERL_USE_EXTERNAL_MODULES": "",
        "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("PROBE"))
    return json.loads(line[len("PROBE") :])


def test_entry_point_is_installed():
    from importlib.metadata import entry_points

    assert "tars_verl.verl_plugin" in [ep.value for ep in entry_points(group="verl.plugins") if ep.name == "tars"]


def test_import_verl_loads_no_more_modules_with_the_plugin():
    """Module count, not wall time: the plug-in must not drag the reward stack into every verl process."""
    without, with_plugin = probe("none"), probe("auto")
    assert with_plugin["modules"] <= 1.1 * without["modules"], (with_plugin, without)
    assert not with_plugin["reward_manager_loaded"] and not with_plugin["trainer_loaded"]


def test_tars_is_registered_when_verl_looks_it_up():
    found = probe("auto", "lookup")
    assert found["manager_is_real"] and found["trainer_is_real"], found


def test_lazy_hook_is_installed_once_and_registers_already_imported_targets():
    """Loading the plug-in again (verl loads custom_reward_function.path by file) adds no second hook."""
    code = (
        "import sys, importlib.util, verl\n"
        "import verl.experimental.reward_loop.reward_manager as rm\n"
        "spec = importlib.util.spec_from_file_location('copy_of_plugin', sys.argv[1])\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "hooks = [f for f in sys.meta_path if getattr(f, 'tars_after_import', False)]\n"
        "assert len(hooks) <= 1, hooks\n"
        "assert 'tars' in rm.registry.REWARD_MANAGER\n"
        "print('OK')\n"
    )
    env = {
        **os.environ,
        "VERL_USE_EXTERNAL_PLUGINS": "auto",
        "VERL_USE_EXTERNAL_MODULES": "",
        "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    out = subprocess.run(
        [sys.executable, "-c", code, os.path.join(ROOT, "tars_verl", "verl_plugin.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
