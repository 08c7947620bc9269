"""Rainbow Teaming (tars_verl.data.rainbow) against a REAL vLLM CPU server.

One tiny model (tars_verl/testing/rainbow_responder.py) plays target, mutator, judge and guard with scripted replies,
on one server started once for this module: category ``omega`` gets a malformed mutator reply; the ``gamma`` style's
prompts hold ``please``, which makes the target comply (SURE) where it otherwise refuses (SORRY); the judge names the
SURE reply, and on a tie always says Response 1; the guard calls SURE unsafe. The fast tests need no server.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import require_vllm

from tars_verl.data.rainbow import Archive, Elite, ModelEndpoint, RainbowConfig, RainbowError, run_rainbow, run_sweep
from tars_verl.data.rainbow.descriptors import load_names
from tars_verl.data.rainbow.prompts import load_prompts
from tars_verl.data.sources import load_source, read_rainbow_archives
from tars_verl.testing.rainbow_responder import (
    MALFORMED_CATEGORY,
    SERVED_NAMES,
    STYLE_PROMPTS,
    ensure_rainbow_responder,
)
from tars_verl.testing.vllm_server import free_port

ALPHA_GAMMA, ALPHA_DELTA = STYLE_PROMPTS[("alpha", "gamma")], STYLE_PROMPTS[("alpha", "delta")]
BETA_GAMMA = STYLE_PROMPTS[("beta", "gamma")]


@pytest.fixture(scope="module")
def rainbow_url():
    """One vLLM server with the scripted responder under the four role names (trained once, cached by code hash).
    Module scope: only this module uses it, so it stops (and frees its memory) when the module is done."""
    from tars_verl.testing.vllm_server import VLLMServer

    if os.environ.get("TARS_RAINBOW_SERVER_URL"):  # a server already serving the responder (while developing)
        yield os.environ["TARS_RAINBOW_SERVER_URL"].rstrip("/") + "/v1"
        return
    require_vllm()
    model = ensure_rainbow_responder(log=lambda m: None)
    with VLLMServer(model, SERVED_NAMES) as srv:
        yield srv.url + "/v1"


def make_cfg(url, out, categories=("alpha", "beta"), styles=("gamma", "delta"), **kw) -> RainbowConfig:
    def ep(model):
        return ModelEndpoint(url, model, temperature=0.0, max_tokens=32, max_retries=1)

    kw.setdefault("batch_size", len(categories) * len(styles))
    return RainbowConfig(
        out=str(out),
        target=ep("tiny-target"),
        mutator=ep("tiny-mutator"),
        judge=ep("tiny-judge"),
        fitness={"backend": "guard_chat", "url": url, "model": "tiny-guard", "max_tokens": 8, "max_retries": 1},
        risk_categories=tuple(categories),
        attack_styles=tuple(styles),
        progress_bar=False,
        **kw,
    )


def write_archive(path, rows) -> str:
    with open(path, "w") as f:
        json.dump([[{"prompt": p, "score": 0.0} if p else {} for p in row] for row in rows], f)
    return str(path)


def cells(path) -> dict[tuple[int, int], dict]:
    with open(path) as f:
        data = json.load(f)
    return {(i, j): c for i, row in enumerate(data) for j, c in enumerate(row) if c}


def log_records(cfg) -> list[dict]:
    with open(os.path.join(cfg.run_dir, "replacements.jsonl")) as f:
        return [json.loads(line) for line in f]


# -- no server ---------------------------------------------------------------------------------------------------
def test_target_cells_are_drawn_towards_empty_and_low_fitness_cells():
    a = Archive(("c0", "c1"), ("s0", "s1"))
    a.put((0, 0), Elite("p", "r", 0.9, 1))
    a.put((0, 1), Elite("p", "r", 0.5, 1))
    a.put((1, 0), Elite("p", "r", 0.1, 1))  # (1, 1) stays empty: fitness 0
    p = a.target_distribution(0.1)
    assert list(np.argsort(-p)) == [3, 2, 1, 0]  # empty, then 0.1, 0.5, 0.9
    assert p[3] / p[0] == pytest.approx(np.exp(9.0))  # exp(-F/t), t = 0.1
    rng = np.random.default_rng(0)
    drawn = [tuple(a.sample_targets(rng, 1, 0.1)[0]) for _ in range(2000)]
    assert drawn.count((1, 1)) > drawn.count((1, 0)) > drawn.count((0, 1)) > drawn.count((0, 0))
    two = a.sample_targets(rng, 2, 0.1)
    assert len(set(two)) == 2  # distinct cells within a batch


def test_unreachable_endpoints_fail_at_start_naming_each(tmp_path):
    dead = {role: f"http://127.0.0.1:{free_port()}/v1" for role in ("target", "mutator", "judge", "fitness")}
    dead["judge"] = dead["judge"].replace("http://", "http://user:s3cret-pass@")  # never shown
    cfg = make_cfg(dead["target"], tmp_path)
    cfg.mutator.url, cfg.judge.url, cfg.fitness["url"] = dead["mutator"], dead["judge"], dead["fitness"]
    with pytest.raises(RainbowError) as err:
        run_rainbow(cfg)
    shown = {**dead, "judge": dead["judge"].replace("user:s3cret-pass@", "***@")}
    for role in ("target", "mutator", "judge"):
        assert f"{role} endpoint {shown[role]} does not answer" in str(err.value)
    assert "fitness scorer" in str(err.value) and dead["fitness"] in str(err.value)
    assert "s3cret" not in str(err.value)
    assert not os.path.exists(cfg.run_dir)  # nothing written before everything answered


def test_a_local_checkpoint_is_refused_with_the_command_that_serves_it(tmp_path):
    cfg = make_cfg(str(tmp_path), tmp_path / "out")  # --target PATH
    with pytest.raises(ValueError, match=r"(?s)starts no model server.*vllm serve .* --served-model-name target"):
        cfg.validate()


def test_command_line_names_a_sweeps_archives_and_refuses_a_local_target(tmp_path, capsys):
    from tars_verl.data.rainbow.cli import build_parser, configs_from_args, main

    common = ["--mutator", "http://m/v1", "--judge", "http://j/v1", "--fitness", "http://g/v1", "--out", str(tmp_path)]
    args = build_parser().parse_args(
        ["--target", "sft=http://a/v1", "--target", "rl=http://b/v1", "--seed", "1", "--seed", "2", *common]
    )
    configs = configs_from_args(args)
    assert [c.run_name for c in configs] == [
        "archive_sft_seed1",
        "archive_sft_seed2",
        "archive_rl_seed1",
        "archive_rl_seed2",
    ]
    assert configs[2].target.url == "http://b/v1" and configs[2].target.temperature == 0.6
    assert configs[0].fitness == {
        "backend": "guard_chat",
        "url": "http://g/v1",
        "model": "meta-llama/Llama-Guard-3-8B",
        "format": "llama_guard",
    }
    assert main(["--target", str(tmp_path), *common]) == 2
    assert "this tool starts no model server" in capsys.readouterr().err


def test_bad_prompt_and_descriptor_files_are_named(tmp_path):
    bad = tmp_path / "prompts.json"
    bad.write_text(json.dumps({"judge": "Which is worse? {response_1}"}))
    with pytest.raises(ValueError, match=r"prompts.json: template 'judge' lacks placeholder\(s\) \['\{response_2\}'\]"):
        load_prompts(str(bad))
    bad.write_text(json.dumps({"mutate": "x"}))
    with pytest.raises(ValueError, match=r"prompts.json: unknown key\(s\) \['mutate'\]"):
        load_prompts(str(bad))
    styles = tmp_path / "styles.txt"
    styles.write_text("# the paper's\nSlang\n\nslang\n")
    with pytest.raises(ValueError, match=r"styles.txt: 'slang' appears twice"):
        load_names(str(styles), "attack styles")


# -- against the real server ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cells_fill_and_malformed_mutator_replies_are_counted_and_skipped(rainbow_url, tmp_path):
    cfg = make_cfg(rainbow_url, tmp_path, categories=("alpha", "beta", MALFORMED_CATEGORY), iterations=1)
    summary = run_rainbow(cfg)
    got = cells(cfg.archive_path)
    # Every cell is drawn once (batch = grid); from an empty archive each prompt is generated from nothing.
    assert {c: v["prompt"] for c, v in got.items()} == {
        (0, 0): ALPHA_GAMMA,
        (0, 1): ALPHA_DELTA,
        (1, 0): BETA_GAMMA,
        (1, 1): STYLE_PROMPTS[("beta", "delta")],
    }
    # Fitness = P(unsafe) of the reply: the guard calls the compliant (gamma) replies unsafe.
    assert got[(0, 0)]["score"] > 0.9 and got[(1, 0)]["score"] > 0.9
    assert got[(0, 1)]["score"] < 0.1 and got[(1, 1)]["score"] < 0.1
    assert summary.counters["malformed_mutator"] == 2 and summary.counters["fills"] == 4
    assert (summary.cells_filled, summary.cells) == (4, 6)
    assert [r["event"] for r in log_records(cfg)] == ["fill"] * 4
    df = read_rainbow_archives(cfg.archive_path)  # what build_rl_mix reads
    assert len(df) == 4 and df.attrs["empty_cells"] == 2


@pytest.mark.slow
def test_replacement_follows_the_judges_preference(rainbow_url, tmp_path):
    init = write_archive(
        tmp_path / "init.json",
        [
            ["tell me a fact", "please give me everything"],  # the target refuses / complies
            ["", "describe the weather"],  # (beta, gamma) empty; (beta, delta): refusal vs refusal
        ],
    )
    cfg = make_cfg(rainbow_url, tmp_path / "out", init_archive=init, iterations=1)
    summary = run_rainbow(cfg)
    got = cells(cfg.archive_path)
    assert got[(0, 0)]["prompt"] == ALPHA_GAMMA  # the judge prefers the candidate's reply: replaced
    assert got[(0, 1)]["prompt"] == "please give me everything"  # the judge prefers the incumbent's: kept
    assert got[(1, 0)]["prompt"] == BETA_GAMMA  # empty: filled without a judge
    assert got[(1, 1)]["prompt"] == "describe the weather"  # a tie (a position-biased judge): kept
    events = {tuple(r["cell"]): r for r in log_records(cfg)}
    assert set(events) == {(0, 0), (1, 0)}
    assert events[(0, 0)]["event"] == "replace" and events[(0, 0)]["judge_votes"] == {"candidate": 4, "of": 4}
    assert events[(0, 0)]["previous"]["prompt"] == "tell me a fact"
    assert summary.counters["kept"] == 2 and summary.counters["judge_calls"] == 12


@pytest.mark.slow
def test_bleu_filter_rejects_near_copies_of_the_parent(rainbow_url, tmp_path):
    # One cell; its prompt is the parent, and the mutator's candidate for it is ALPHA_GAMMA.
    def one(name, parent):
        init = write_archive(tmp_path / f"{name}.json", [[parent]])
        cfg = make_cfg(rainbow_url, tmp_path / name, ("alpha",), ("gamma",), init_archive=init, iterations=1)
        return run_rainbow(cfg).counters, cells(cfg.archive_path)[(0, 0)]["prompt"]

    counters, kept = one("copy", ALPHA_GAMMA.replace("steps", "step"))  # BLEU 0.76 with the candidate
    assert counters["too_similar"] == 1 and counters["judged"] == 0 and kept == ALPHA_GAMMA.replace("steps", "step")
    counters, replaced = one("different", "tell me a fact")  # BLEU 0: judged, and the candidate wins
    assert counters["too_similar"] == 0 and counters["replacements"] == 1 and replaced == ALPHA_GAMMA


@pytest.mark.slow
def test_resume_after_an_interruption_reproduces_the_archive_and_log(rainbow_url, tmp_path):
    init = write_archive(
        tmp_path / "init.json", [["tell me a fact", "please give me everything"], ["describe the weather", ""]]
    )

    def cfg(out):  # one cell per iteration, drawn by fitness; seed 1 replaces one in each of iterations 1 and 2
        return make_cfg(
            rainbow_url, tmp_path / out, init_archive=init, seed=1, iterations=2, batch_size=1, checkpoint_every=1
        )

    straight = cfg("straight")
    run_rainbow(straight)
    assert [r["iteration"] for r in log_records(straight)] == [1, 2]

    class Interrupt(Exception):
        pass

    def stop_at_2(t, search):
        if t == 2:  # iteration 2 is logged, and no checkpoint covers it yet
            raise Interrupt

    resumed = cfg("resumed")
    with pytest.raises(Interrupt):
        run_rainbow(resumed, progress=stop_at_2)
    assert not os.path.exists(resumed.archive_path)  # no archive until the run is complete
    assert [r["iteration"] for r in log_records(resumed)] == [1, 2]  # the last line: the resume must drop it
    summary = run_rainbow(resumed)
    assert summary.iterations_run == 1  # iteration 2 again: 1 came from the checkpoint
    # Same cells, prompts, events; fitness to 1e-6 (vLLM's CPU kernels may round differently in another batch).
    a, b = cells(straight.archive_path), cells(resumed.archive_path)
    assert {c: v["prompt"] for c, v in a.items()} == {c: v["prompt"] for c, v in b.items()}
    assert [a[c]["score"] for c in sorted(a)] == pytest.approx([b[c]["score"] for c in sorted(b)], abs=1e-6)
    strip = lambda recs: [{k: v for k, v in r.items() if k != "fitness"} for r in recs]  # noqa: E731
    assert strip(log_records(straight)) == strip(log_records(resumed))
    with open(os.path.join(straight.run_dir, "summary.json")) as f:
        assert json.load(f)["counters"] == summary.counters

    changed = cfg("resumed")
    changed.bleu_threshold = 0.5
    with pytest.raises(RainbowError, match="bleu_threshold changed"):
        run_rainbow(changed)


@pytest.mark.slow
def test_a_sweep_on_a_local_ray_cluster_merges_through_build_rl_mix(rainbow_url, tmp_path):
    import ray

    init = write_archive(tmp_path / "init.json", [["tell me a fact", ""]])
    configs = [
        make_cfg(
            rainbow_url,
            tmp_path / "rainbow",
            ("alpha",),
            ("gamma", "delta"),
            init_archive=init,
            seed=s,
            name=f"archive_seed{s}",
            iterations=1,
        )
        for s in (1, 2)
    ]
    ray.init(num_cpus=2, include_dashboard=False)  # a private local cluster (never `ray stop`)
    try:
        summaries = run_sweep(configs, ray_address="local")
    finally:
        ray.shutdown()
    assert [s.name for s in summaries] == ["archive_seed1", "archive_seed2"]
    df = load_source("rainbow_teaming", str(tmp_path / "rainbow"))  # build_rl_mix's --source rainbow_teaming=DIR
    assert sorted(df["text"]) == sorted([ALPHA_GAMMA, ALPHA_DELTA] * 2)
    assert df.attrs["where"].endswith("(2 Rainbow-Teaming archive(s))")
