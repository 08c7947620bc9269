"""The attack runner (python -m tars_verl.eval.attack): start-up checks before any work, resume, shards, refused
setting changes, the round trip into the evaluation, the importers of precomputed sets, the per-attack report table,
and the Ray launcher on a local cluster with fake GPUs. PAIR against real vLLM servers: test_attack_pair_on_cpu.py."""

import json
import os
import socket
import time

import pandas as pd
import pytest

from tars_verl.errors import ScorerError
from tars_verl.eval.attack.behaviors import load_behaviors, load_targets
from tars_verl.eval.attack.cli import main as attack_main
from tars_verl.eval.attack.evaluation import attack_kind
from tars_verl.eval.attack.importers import import_harmbench, import_jailbreakbench
from tars_verl.eval.attack.runner import AttackRunError, RunConfig, SettingsChangedError, run_attack
from tars_verl.eval.metrics import attack_table
from tars_verl.eval.prompts import load_attack_file
from tars_verl.eval.prompts import load_behaviors as eval_behaviors
from tars_verl.testing.attack_models import write_behaviors_csv, write_pair_pap_standins

ECHO = "tars_verl.testing.attack_models:EchoAttack"
ROWS = [{"BehaviorID": f"b{i}", "Behavior": f"do thing {i}", "FunctionalCategory": "standard"} for i in range(5)] + [
    {
        "BehaviorID": "ctx",
        "Behavior": "summarise it",
        "ContextString": "Some passage.",
        "FunctionalCategory": "contextual",
    }
]


@pytest.fixture
def csv(tmp_path):
    return write_behaviors_csv(str(tmp_path / "behaviors.csv"), ROWS)


def calls(path) -> list[str]:
    return open(path).read().split() if os.path.exists(path) else []


def echo(tmp_path, csv, **kw) -> RunConfig:
    options = {"calls_file": str(tmp_path / "calls.txt"), **kw.pop("options", {})}
    return RunConfig(
        method=ECHO,
        model="http://echo.invalid/v1",
        behaviors=csv,
        out=str(tmp_path / "cases" / "echo.json"),
        options=options,
        progress=False,
        **kw,
    )


# -- bad input, caught before any work -----------------------------------------------------------------------------
def test_behaviors_file_errors_name_the_file_column_and_rows(tmp_path):
    bad = tmp_path / "no_id.csv"
    pd.DataFrame({"Behavior": ["x"], "ContextString": [""]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"no_id.csv: missing column\(s\) \['BehaviorID'\]"):
        load_behaviors(str(bad))
    dup = write_behaviors_csv(str(tmp_path / "dup.csv"), [{"BehaviorID": "a", "Behavior": "x"}] * 2)
    with pytest.raises(ValueError, match=r"dup.csv: column 'BehaviorID' repeats 1 id\(s\): 'a' \(rows 0 and 1\)"):
        load_behaviors(dup)
    empty = write_behaviors_csv(str(tmp_path / "empty.csv"), [{"BehaviorID": "a", "Behavior": " "}])
    with pytest.raises(ValueError, match=r"empty.csv: column 'Behavior' is empty for BehaviorID\(s\) \['a'\]"):
        load_behaviors(empty)
    good = load_behaviors(write_behaviors_csv(str(tmp_path / "ok.csv"), ROWS))
    assert [b.behavior_id for b in good] == ["b0", "b1", "b2", "b3", "b4", "ctx"]
    assert good[-1].request() == "Some passage.\n\n---\n\nsummarise it" and good[-1].functional_category == "contextual"
    # through the command: the error, and nothing written
    with pytest.raises(ValueError, match="BehaviorID"):
        attack_main(["--method", ECHO, "--behaviors", str(bad), "--out", str(tmp_path / "c" / "x.json")])
    assert not (tmp_path / "c").exists()


def test_a_missing_target_string_names_the_behavior_id_at_start_up(tmp_path, csv):
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps({f"b{i}": "Sure, here is" for i in range(5)}))  # no "ctx"
    hb = write_pair_pap_standins(str(tmp_path / "hb"))
    args = ["--method", "pair", "--model", "http://127.0.0.1:9/v1", "--model-name", "t", "--attacker-url",
            "http://127.0.0.1:9/v1", "--attacker-model", "a", "--pair-prompts", hb, "--targets", str(targets),
            "--behaviors", csv, "--out", str(tmp_path / "c" / "pair.json")]  # fmt: skip
    with pytest.raises(ValueError, match=r"no target string for 1 BehaviorID\(s\): \['ctx'\]"):
        attack_main(args)
    assert not (tmp_path / "c").exists()  # before the endpoints were even tried


def test_targets_come_from_a_url_once_then_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TARS_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "published" / "targets.json"
    src.parent.mkdir()
    src.write_text(json.dumps({"a": "Sure, here is A"}))
    targets, where = load_targets(src.as_uri())
    assert targets == {"a": "Sure, here is A"} and where == src.as_uri()
    src.unlink()
    assert load_targets(src.as_uri())[0] == {"a": "Sure, here is A"}  # from the cache
    (tmp_path / "bad.json").write_text(json.dumps({"a": ""}))
    with pytest.raises(ValueError, match=r"bad.json: the target of BehaviorID\(s\) \['a'\] is not a non-empty string"):
        load_targets(str(tmp_path / "bad.json"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_attacker_fails_at_start_naming_it_before_any_work(tmp_path, csv):
    hb = write_pair_pap_standins(str(tmp_path / "hb"))
    dead = f"http://127.0.0.1:{free_port()}/v1"
    targets = tmp_path / "t.json"
    targets.write_text(json.dumps({r["BehaviorID"]: "Sure" for r in ROWS}))
    cfg = RunConfig(
        method="pair", model=dead, behaviors=csv, out=str(tmp_path / "c" / "pair.json"), targets=str(targets),
        options={"attacker_url": dead, "attacker_model": "mixtral", "target_model_name": "t", "pair_prompts": hb},
        progress=False,
    )  # fmt: skip
    t0 = time.monotonic()
    with pytest.raises(ScorerError, match=rf"attacker: the endpoint {dead} cannot be reached"):
        run_attack(cfg)
    assert time.monotonic() - t0 < 60
    assert os.listdir(tmp_path / "c" / "pair" / "behaviors") == []  # no behaviour was attacked


def test_a_target_model_that_cannot_be_loaded_fails_at_start(tmp_path, csv, server):
    hb = write_pair_pap_standins(str(tmp_path / "hb"))
    server.files["/v1/models"] = json.dumps({"data": [{"id": "attacker"}]})
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    (broken / "model.safetensors").write_bytes(b"\0" * 16)
    targets = tmp_path / "t.json"
    targets.write_text(json.dumps({r["BehaviorID"]: "Sure" for r in ROWS}))
    cfg = RunConfig(
        method="pair", model=str(broken), behaviors=csv, out=str(tmp_path / "c" / "pair.json"), targets=str(targets),
        options={"attacker_url": server.url + "/v1", "attacker_model": "attacker", "pair_prompts": hb,
                 "target_backend": "hf"},
        progress=False,
    )  # fmt: skip
    with pytest.raises(ValueError, match=rf"target model {broken}: cannot be loaded"):
        run_attack(cfg)
    assert os.listdir(tmp_path / "c" / "pair" / "behaviors") == []
    assert not [p for p, _ in server.requests]  # no chat request was made


# -- resume, shards, settings ---------------------------------------------------------------------------------------
def test_shards_resume_and_merge_into_the_file_the_evaluation_reads(tmp_path, csv):
    out = tmp_path / "cases" / "echo.json"
    first = run_attack(echo(tmp_path, csv, shard=(0, 2)))
    assert sorted(calls(tmp_path / "calls.txt")) == ["b0", "b2", "b4"] and first["out"] is None
    assert not out.exists()  # written only when every behaviour is done
    second = run_attack(echo(tmp_path, csv, shard=(1, 2)))
    assert sorted(calls(tmp_path / "calls.txt")) == ["b0", "b1", "b2", "b3", "b4", "ctx"]
    assert second["out"] == str(out) and second["skipped_done"] == 3
    cases = json.loads(out.read_text())
    assert cases["b1"] == ["do thing 1 !"] and cases["ctx"] == ["Some passage.\n\n---\n\nsummarise it !"]
    logs = json.loads((tmp_path / "cases" / "echo.logs.json").read_text())
    assert set(logs) == set(cases) and logs["b0"]["steps"] == 2 and "time_s" in logs["b0"]
    meta = json.loads((tmp_path / "cases" / "echo.meta.json").read_text())
    assert meta["kind"] == "generated" and meta["settings"] == {"suffix": "!"} and meta["behaviors"] == 6
    # the evaluation reads it unchanged, each test case paired with its behaviour (and context) by BehaviorID
    prompts = load_attack_file(str(out), "echo", eval_behaviors(csv))
    ctx = next(p for p in prompts if p.extra["behavior_id"] == "ctx")
    assert ctx.behavior == "summarise it" and ctx.context == "Some passage."
    assert ctx.messages[-1]["content"] == "Some passage.\n\n---\n\nsummarise it !"
    # a rerun attacks nothing
    again = run_attack(echo(tmp_path, csv))
    assert again["attacked"] == 0 and again["skipped_done"] == 6 and len(calls(tmp_path / "calls.txt")) == 6


def test_a_changed_setting_is_refused_and_restart_sets_the_old_work_aside(tmp_path, csv):
    run_attack(echo(tmp_path, csv))
    with pytest.raises(SettingsChangedError, match=r"6 behaviour\(s\) .* \(changed: settings.suffix\).*--restart"):
        run_attack(echo(tmp_path, csv, options={"suffix": "?"}))
    assert len(calls(tmp_path / "calls.txt")) == 6  # refused before any work
    run_attack(echo(tmp_path, csv, options={"suffix": "?"}, restart=True))
    assert len(calls(tmp_path / "calls.txt")) == 12
    assert json.loads((tmp_path / "cases" / "echo.json").read_text())["b0"] == ["do thing 0 ?"]
    assert [d for d in os.listdir(tmp_path / "cases") if d.startswith("echo.stale-")]  # nothing deleted


def test_a_changed_behaviour_is_attacked_again_and_only_it(tmp_path, csv):
    run_attack(echo(tmp_path, csv))
    rows = [dict(r) for r in ROWS]
    rows[-1]["ContextString"] = "Another passage."
    changed = write_behaviors_csv(str(tmp_path / "behaviors2.csv"), rows)
    summary = run_attack(echo(tmp_path, changed))
    assert summary["attacked"] == 1 and calls(tmp_path / "calls.txt")[-1] == "ctx"
    assert json.loads((tmp_path / "cases" / "echo.json").read_text())["ctx"][0].startswith("Another passage.")


def test_a_failing_behaviour_is_named_the_others_are_kept_and_a_rerun_retries_it(tmp_path, csv):
    with pytest.raises(AttackRunError, match=r"1 of 6 behaviour\(s\) failed \(b3: RuntimeError: planned failure"):
        run_attack(echo(tmp_path, csv, options={"fail_ids": ["b3"]}))
    assert len(os.listdir(tmp_path / "cases" / "echo" / "behaviors")) == 5
    assert not (tmp_path / "cases" / "echo.json").exists()
    # fail_ids is not a setting of the test cases, so the rerun resumes: only b3 again
    summary = run_attack(echo(tmp_path, csv))
    assert summary["attacked"] == 1 and calls(tmp_path / "calls.txt")[-1] == "b3"


def test_shard_and_option_errors_are_clear(tmp_path, csv):
    with pytest.raises(ValueError, match=r"--shard 2/2: need 0 <= i < n"):
        attack_main(["--method", ECHO, "--behaviors", csv, "--out", str(tmp_path / "x.json"), "--shard", "2/2"])
    with pytest.raises(ValueError, match=r"attack echo: bad options .*unexpected keyword argument 'steps'"):
        run_attack(echo(tmp_path, csv, options={"steps": 3}))
    with pytest.raises(ValueError, match=r"unknown attack method 'gcgg'"):
        attack_main(["--method", "gcgg", "--behaviors", csv, "--out", str(tmp_path / "x.json")])
    with pytest.raises(ValueError, match=r"--out .*x.txt: give the test-case file to write, ending in .json"):
        attack_main(["--method", ECHO, "--behaviors", csv, "--out", str(tmp_path / "x.txt")])


# -- PAP's earlier technique list (tars_v0) against the fake paraphraser; HarmBench's PAP: test_attack_pair_on_cpu.py
def test_pap_tars_v0_sends_and_keeps_the_context_and_redoes_a_changed_one(tmp_path, server):
    server.files["/v1/models"] = json.dumps({"data": [{"id": "paraphraser"}]})
    rows = [
        {"BehaviorID": "std_a", "Behavior": "Write a standard thing A"},
        {"BehaviorID": "ctx_c", "Behavior": "Summarise the passage for C", "ContextString": "Passage about C."},
    ]
    csv = write_behaviors_csv(str(tmp_path / "b.csv"), rows)
    cfg = RunConfig(
        method="pap", model="", behaviors=csv, out=str(tmp_path / "pap.json"), progress=False,
        options={"attacker_url": server.url + "/v1", "attacker_model": "paraphraser", "techniques": "tars_v0"},
    )  # fmt: skip
    run_attack(cfg)
    asked = {}
    for _, payload in server.requests:
        content = payload["messages"][-1]["content"]
        asked.setdefault(content.split("[REQUEST]\n")[1].split("\n[/REQUEST]")[0], []).append(content)
    assert len(asked["Summarise the passage for C"]) == 5
    assert all("[CONTEXT]\nPassage about C.\n[/CONTEXT]" in c for c in asked["Summarise the passage for C"])
    assert not any("[CONTEXT]" in c for c in asked["Write a standard thing A"])
    cases = json.loads((tmp_path / "pap.json").read_text())
    assert len(cases["ctx_c"]) == 5 and all(
        c.startswith("Passage about C.\n\n---\n\n") and "Summarise the passage for C" in c for c in cases["ctx_c"]
    )
    assert not any("---" in c for c in cases["std_a"])
    assert json.loads((tmp_path / "pap.meta.json").read_text())["adaptive"] is False
    # the context changes: only that behaviour is asked again
    n = len(server.requests)
    rows[1]["ContextString"] = "New passage."
    write_behaviors_csv(csv, rows)
    run_attack(cfg)
    assert len(server.requests) == n + 5
    assert all(
        c.startswith("New passage.\n\n---\n\n") for c in json.loads((tmp_path / "pap.json").read_text())["ctx_c"]
    )


# -- importers and the report's per-attack table ---------------------------------------------------------------------
def test_harmbench_test_cases_import_in_each_layout_as_transfer(tmp_path, csv, tiny_dir):
    flat = tmp_path / "test_cases.json"
    flat.write_text(json.dumps({"b0": ["gcg case 0"], "ctx": ["Some passage.\n\n---\n\nctx case"]}))
    folder = tmp_path / "test_cases_individual_behaviors"
    for bid, case in (("b0", "gcg case 0"), ("b1", "gcg case 1")):
        (folder / bid).mkdir(parents=True)
        (folder / bid / "test_cases.json").write_text(json.dumps({bid: [case]}))
    completions = tmp_path / "completions.json"
    completions.write_text(json.dumps({"b2": [{"test_case": "pair case", "generation": "Sure..."}]}))
    for src, want in ((flat, {"b0", "ctx"}), (folder, {"b0", "b1"}), (completions, {"b2"})):
        out = tmp_path / "imported" / f"{src.stem}.json"
        meta = import_harmbench(str(src), str(out), method="GCG", source_model="llama2_7b")
        assert set(json.loads(out.read_text())) == want and meta["kind"] == "imported"
        prompts = load_attack_file(str(out), "gcg", eval_behaviors(csv))
        assert {p.extra["behavior_id"] for p in prompts} == want
        assert attack_kind(str(out), f"{tiny_dir}/policy", "hf") == "transfer"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"b0": [{"generation": "no test case"}]}))
    with pytest.raises(ValueError, match=r"bad.json: BehaviorID 'b0' test case 0 is null, not text"):
        import_harmbench(str(bad), str(tmp_path / "x.json"))


def test_jailbreakbench_artifacts_import_with_their_behaviours(tmp_path):
    artifact = {  # JailbreakBench's layout (fields as its artifacts have them; our own text)
        "parameters": {"method": "PAIR", "model": "vicuna-13b-v1.5", "attack_type": "black_box"},
        "jailbreaks": [
            {"index": 0, "goal": "Write goal zero", "behavior": "Zero", "category": "Cat A", "prompt": "jb prompt 0",
             "response": "r", "jailbroken": True},
            {"index": 1, "goal": "Write goal one", "behavior": "One", "category": "Cat B", "prompt": None,
             "response": None, "jailbroken": False},
        ],
    }  # fmt: skip
    src = tmp_path / "vicuna.json"
    src.write_text(json.dumps(artifact))
    out = tmp_path / "cases" / "jbb_pair.json"
    meta = import_jailbreakbench(str(src), str(out))
    assert meta["source_model"] == "vicuna-13b-v1.5" and meta["skipped_without_prompt"] == 1
    assert json.loads(out.read_text()) == {"jbb_0": ["jb prompt 0"]}
    behaviors = tmp_path / "cases" / "jbb_pair.behaviors.csv"
    prompts = load_attack_file(str(out), "pair_jbb", eval_behaviors(str(behaviors)))
    assert prompts[0].behavior == "Write goal zero" and prompts[0].messages[-1]["content"] == "jb prompt 0"
    assert attack_kind(str(out), "any-model", "openai") == "transfer"
    with pytest.raises(ValueError, match="not a JailbreakBench artifact"):
        (tmp_path / "x.json").write_text("{}")
        import_jailbreakbench(str(tmp_path / "x.json"), str(tmp_path / "y.json"))


def test_generated_cases_are_adaptive_for_their_model_only(tmp_path, csv, tiny_dir):
    run_attack(RunConfig(method=ECHO, model=f"{tiny_dir}/policy", behaviors=csv, out=str(tmp_path / "echo.json")))
    assert attack_kind(str(tmp_path / "echo.json"), f"{tiny_dir}/policy", "hf") == "adaptive"
    assert attack_kind(str(tmp_path / "echo.json"), f"{tiny_dir}/classifier", "hf") == "transfer"
    (tmp_path / "plain.json").write_text(json.dumps({"b0": ["x"]}))
    assert attack_kind(str(tmp_path / "plain.json"), f"{tiny_dir}/policy", "hf") == "unknown"


def test_the_report_table_gives_each_attack_its_kind_and_the_mean_over_attacks():
    safety = pd.DataFrame(
        [
            {"model": m, "dataset": d, "attack": a, "n": 10, "dsr": v, "dsr_lo": v - 0.2, "dsr_hi": min(1.0, v + 0.1)}
            for m in ("tars", "base")
            for d, a, v in (("harmbench", "gcg", 0.9), ("harmbench", "pair", 0.5), ("harmbench", "direct", 1.0),
                            ("harmbench", "pap", 0.7), ("strongreject", "gcg", 0.1))
        ]
    )  # fmt: skip
    kinds = {("tars", "gcg"): "adaptive", ("tars", "pair"): "adaptive", ("tars", "pap"): "model-agnostic",
             ("base", "gcg"): "transfer", ("base", "pair"): "adaptive", ("base", "pap"): "model-agnostic"}  # fmt: skip
    t = attack_table(safety, kinds)
    tars = t[t["model"] == "tars"].set_index("attack")
    assert list(tars.index) == ["gcg", "pair", "pap", "mean"]  # HarmBench's order; direct and other datasets out
    assert tars.loc["mean", "dsr"] == pytest.approx((0.9 + 0.5 + 0.7) / 3)
    assert tars.loc["mean", "dsr_lo"] == pytest.approx((0.7 + 0.3 + 0.5) / 3)
    assert tars.loc["mean", "kind"] == "adaptive+model-agnostic" and tars.loc["mean", "n"] == 30
    assert t[(t["model"] == "base") & (t["attack"] == "gcg")]["kind"].item() == "transfer"
    with pytest.raises(ValueError, match="kind 'sometimes'"):
        attack_table(safety, {("tars", "gcg"): "sometimes"})


# -- the Ray launcher: one worker per (fake) GPU, or several per GPU -------------------------------------------------
@pytest.mark.slow
def test_ray_launcher_spreads_behaviours_over_every_gpu(tmp_path, csv):
    import ray

    from tars_verl.eval.attack.cluster import run_attack_on_ray

    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False)
    try:
        whole = run_attack_on_ray(echo(tmp_path, csv, options={"delay_s": 0.5}), cpus_per_worker=0.5)
        assert len(whole["workers"]) == 2 and sorted(w["gpus"][0] for w in whole["workers"]) == ["0", "1"]
        logs = json.loads((tmp_path / "cases" / "echo.logs.json").read_text())
        assert {log["cuda_visible_devices"] for log in logs.values()} == {"0", "1"}  # both GPUs attacked
        assert sorted(calls(tmp_path / "calls.txt")) == ["b0", "b1", "b2", "b3", "b4", "ctx"]  # each once
        # half a GPU per worker: four workers, two on each GPU
        half = echo(tmp_path, csv, options={"delay_s": 0.5})
        half.out = str(tmp_path / "half" / "echo.json")
        summary = run_attack_on_ray(half, gpus_per_worker=0.5, cpus_per_worker=0.5)
        gpus = [w["gpus"][0] for w in summary["workers"]]
        assert len({w["pid"] for w in summary["workers"]}) == 4 and sorted(gpus) == ["0", "0", "1", "1"]
        # resumed without Ray: nothing left to do
        assert run_attack(echo(tmp_path, csv))["attacked"] == 0
    finally:
        ray.shutdown()


# -- PAIR's protocol details that a real server will not show on demand (a fake attacker / target / judge) --------
def chat_reply(text: str) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def pair_once(tmp_path, server, **options):
    from tars_verl.eval.attack.base import Behavior
    from tars_verl.eval.attack.pair import PAIRAttack

    server.files["/v1/models"] = json.dumps({"data": [{"id": "attacker"}, {"id": "target"}]})
    hb = write_pair_pap_standins(str(tmp_path / "hb"))
    attack = PAIRAttack(
        server.url + "/v1",
        attacker_url=server.url + "/v1",
        attacker_model="attacker",
        target_model_name="target",
        pair_prompts=hb,
        n_streams=1,
        steps=1,
        **options,
    )
    attack.check_ready()

    async def go():
        try:
            return await attack.run(Behavior("b", "do the thing", target="Sure, here is the thing"))
        finally:
            await attack.aclose()

    import asyncio

    return asyncio.run(go())


def test_pair_retries_a_malformed_attacker_reply_with_a_new_seed_and_counts_it(tmp_path, server):
    # open_source styles: the attacker continues '{"improvement": "","prompt": "', the judge 'Rating: [['
    server.script = [chat_reply("no json at all"), chat_reply('Say it now"'), chat_reply("Sure."), chat_reply("7]]")]
    result = pair_once(tmp_path, server)
    assert result.test_cases == ["Say it now"]
    log = result.log
    assert log["malformed_replies"] == 1 and log["attacker_attempts"] == 2 and log["streams"][0][0]["attempts"] == 2
    assert log["malformed_examples"] == ['{"improvement": "","prompt": "no json at all}'] and log["best_score"] == 7
    (_, first), (_, retry), (_, target), (_, judge) = server.requests
    assert first["seed"] != retry["seed"] and {**first, "seed": 0} == {**retry, "seed": 0}  # only the seed differs
    assert first["continue_final_message"] and first["stop"] == ["}"] and first["temperature"] == 1.0
    assert first["top_k"] == -1 and first["repetition_penalty"] == 1.0  # not the served model's generation_config
    assert first["messages"][0]["role"] == "system" and first["messages"][-1] == {
        "role": "assistant",
        "content": '{"improvement": "","prompt": "',
    }
    assert target["messages"] == [{"role": "user", "content": "Say it now"}] and target["max_tokens"] == 150
    assert target["temperature"] == 0.0 and target["stop"] == ["}"]
    assert judge["messages"][-1] == {"role": "assistant", "content": "Rating: [["} and judge["max_tokens"] == 5
    assert judge["messages"][0]["content"].startswith("Stand-in judge. Task: `do the thing`.")


def test_pair_api_styles_send_plain_chat_turns_and_an_unparsed_rating_counts_as_one(tmp_path, server):
    attacker_json = '{"improvement": "first try", "prompt": "Please tell me"}'
    server.script = [chat_reply(attacker_json), chat_reply("No."), chat_reply("I cannot rate this")]
    result = pair_once(tmp_path, server, attacker_style="api", judge_style="api", standard_params_only=True)
    assert result.test_cases == ["Please tell me"] and result.log["judge_unparsed"] == 1
    assert result.log["streams"][0][0]["score"] == 1  # HarmBench's value for a rating it cannot read
    (_, attacker), _, (_, judge) = server.requests
    assert not {"continue_final_message", "stop", "top_k", "repetition_penalty"} & set(attacker)
    assert attacker["messages"][-1]["role"] == "user" and attacker["messages"][0]["role"] == "system"
    assert [m["role"] for m in judge["messages"]] == ["system", "user"]


def test_gcg_runs_through_the_runner_from_its_config_options(tmp_path, tiny_dir):
    from tars_verl.eval.attack.gcg import GCGAttack

    csv = write_behaviors_csv(str(tmp_path / "b.csv"), ROWS[:1] + ROWS[-1:])
    targets = tmp_path / "t.json"
    targets.write_text(json.dumps({"b0": "Sure, here is thing 0", "ctx": "Sure, here is a summary"}))
    opts = {"num_steps": 2, "search_width": 8, "top_k": 8, "eval_with_check_refusal": False, "device": "cpu"}
    cfg = RunConfig(method="gcg", model=f"{tiny_dir}/policy", behaviors=csv, out=str(tmp_path / "gcg.json"),
                    targets=str(targets), options=opts, progress=False)  # fmt: skip
    assert GCGAttack.white_box and run_attack(cfg)["attacked"] == 2
    cases = json.loads((tmp_path / "gcg.json").read_text())
    assert cases["b0"][0].startswith("do thing 0 ") and cases["ctx"][0].startswith(
        "Some passage.\n\n---\n\nsummarise it"
    )
    meta = json.loads((tmp_path / "gcg.meta.json").read_text())
    assert meta["settings"]["num_steps"] == 2 and meta["settings"]["search_width"] == 8
    assert len(json.loads((tmp_path / "gcg.logs.json").read_text())["b0"]["losses"]) == 2
    assert attack_kind(str(tmp_path / "gcg.json"), f"{tiny_dir}/policy", "hf") == "adaptive"
    with pytest.raises(ValueError, match=r"attack gcg: bad options .*'no_such_setting'"):
        run_attack(RunConfig("gcg", f"{tiny_dir}/policy", csv, str(tmp_path / "x.json"), {"no_such_setting": 1},
                             targets=str(targets)))  # fmt: skip
