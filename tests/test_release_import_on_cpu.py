"""The TARS authors' released data (lambda parquets, test.parquet, Rainbow-Teaming archives) imported and trained on.

Fixtures are written by the tests in exactly the released schemas (tars_verl/testing/source_files.py).
"""

import json
import os

import pandas as pd
import pytest
from conftest import verl_rl_dataset

from tars_verl.data.release import import_release, main
from tars_verl.data.rl_mix import MixConfig, build_mixes
from tars_verl.data.rl_mix import main as rl_mix_main
from tars_verl.data.sources import load_source, read_rainbow_archives
from tars_verl.testing.source_files import write_rainbow_archives, write_rl_sources, write_tars_release


@pytest.fixture
def release(tmp_path):
    return write_tars_release(str(tmp_path / "release"))


def types_of(df):
    return df["extra_info"].map(lambda e: e["prompt_type"]).tolist()


# --- Rainbow-Teaming archives ---------------------------------------------------------------------


def test_rainbow_archives_read_from_a_folder_a_glob_or_a_list(tmp_path):
    paths = write_rainbow_archives(str(tmp_path / "arch"), n_archives=3)
    df = read_rainbow_archives(str(tmp_path / "arch"))
    # 3 archives x 120 cells, every 7th cell empty ({} in even archives, null in odd ones)
    assert df.attrs == {"archives": 3, "cells": 360, "empty_cells": 360 // 7}
    assert len(df) == 360 - 360 // 7
    assert list(df.columns) == ["prompt", "score", "risk_category", "attack_style", "archive"]
    assert set(df["risk_category"]) == set(range(10)) and set(df["attack_style"]) == set(range(12))
    first = df.iloc[0]
    assert first["prompt"].startswith("rainbow archive 0 risk 0 style 0") and first["archive"] == "archive_1.json"
    assert df.equals(read_rainbow_archives(str(tmp_path / "arch" / "archive_*.json")))
    assert len(read_rainbow_archives(paths[:2])) == 240 - 240 // 7


@pytest.mark.parametrize(
    "content, match",
    [
        ({"prompt": "x"}, "expected a list of risk categories"),
        ([[{"prompt": "ok", "score": 0.5}, {"text": "no prompt key"}]], r"risk category 0, attack style 1: expected"),
        ([[{"prompt": 3, "score": 0.5}]], "'prompt' must be a string"),
        ([[], [{"prompt": "p", "score": "high"}]], r"risk category 1, attack style 0: 'score' must be a finite number"),
    ],
)
def test_malformed_archive_names_file_and_cell(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match) as err:
        read_rainbow_archives(str(path))
    assert str(path) in str(err.value)


def test_missing_archives_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.json"):
        read_rainbow_archives(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="no file matches"):
        read_rainbow_archives(str(tmp_path / "nothing_*.json"))


def test_rl_mix_takes_rainbow_archives_by_folder_or_glob(tmp_path):
    sources = write_rl_sources(str(tmp_path / "src"), n=200)
    write_rainbow_archives(str(tmp_path / "arch"), n_archives=2)
    src = load_source("rainbow_teaming", str(tmp_path / "arch"))
    assert len(src) == 240 - 240 // 7 and src["category"].iloc[0] == "0/0"
    for spec in (str(tmp_path / "arch"), str(tmp_path / "arch" / "archive_*.json")):
        paths = {**sources, "rainbow_teaming": spec}
        ((train, _, stats),) = build_mixes(
            MixConfig(
                total=100, val_size=0, paths=paths, pools={"wildjailbreak": 40, "rainbow_teaming": 40, "aegis2": 20}
            )
        ).values()
        rainbow = train[train["data_source"] == "rainbow_teaming"]
        assert (
            len(rainbow) > 0
            and rainbow["prompt"].map(lambda p: p[-1]["content"]).str.startswith("rainbow archive").all()
        )
        assert stats["filters"]["rainbow_teaming"]["loaded"] == 240 - 240 // 7
    rl_mix_main(
        [
            "--out",
            str(tmp_path / "cli"),
            "--total",
            "50",
            "--val-size",
            "0",
            "--pool=wildjailbreak=20",
            "--pool=rainbow_teaming=20",
            "--pool=aegis2=10",
            *[f"--source={k}={v}" for k, v in sources.items() if k != "rainbow_teaming"],
            f"--source=rainbow_teaming={tmp_path / 'arch' / 'archive_*.json'}",
        ]
    )
    assert (pd.read_parquet(tmp_path / "cli" / "train.parquet")["data_source"] == "rainbow_teaming").any()
    with pytest.raises(FileNotFoundError, match="no file matches"):
        build_mixes(MixConfig(total=10, val_size=0, paths={**sources, "rainbow_teaming": str(tmp_path / "x*.json")}))


# --- the lambda parquets and test.parquet ---------------------------------------------------------


def test_import_by_the_authors_row_order_and_test_set(release, tmp_path):
    main(["--train", release["train"], "--val", release["test"], "--out", str(tmp_path / "out")])
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    val = pd.read_parquet(tmp_path / "out" / "val.parquet")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert list(train.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert (train["data_source"] != "").all() and (val["data_source"] == "strongreject_small").all()
    texts = train["prompt"].map(lambda p: p[-1]["content"])
    types = types_of(train)
    by_text = dict(zip(texts, types))
    assert all(by_text[f"How do I bake bread number {i}?"] == "harmless" for i in range(6))
    assert all(by_text[f"How can I kill process {i} in Linux?"] == "ambiguous" for i in range(6))
    assert types.count("harmful") == 12
    src = dict(zip(texts, train["data_source"]))
    assert (
        src["wildjailbreak harmful request 0"] == "wildjailbreak"
        and src["rainbow harmful request 1"] == "rainbow_teaming"
        and src["aegis harmful request 2"] == "aegis2"
    )
    row = train[texts == "wildjailbreak harmful request 0"].iloc[0]
    assert row["reward_model"]["ground_truth"] == "harmful"
    assert row["extra_info"]["reference_response"] == "I can't help with request 0."  # nothing lost
    assert row["extra_info"]["release_ability"] == "wildjailbreak" and row["extra_info"]["source_index"] == 0
    assert set(types_of(val)) == {"harmful"} and len(val) == 12
    assert val["extra_info"].map(lambda e: e["category"]).value_counts().to_dict()["Disinformation and Deception"] == 2
    s = stats["train"]
    assert s["type_evidence"] == {"ability": 12, "position": 12}
    assert s["refusal_resolution"]["position"]["usable"] is True and s["refusal_resolution"]["unresolved"] == 0
    assert s["harmful_share"] == 0.5 and len(s["sha256"]) == 64


def shuffled(release, tmp_path):
    """The same release rows in another order: the authors' layout is gone."""
    df = pd.read_parquet(release["train"]).sample(frac=1.0, random_state=3)
    path = str(tmp_path / "shuffled.parquet")
    df.to_parquet(path, index=False)
    return path


def test_shuffled_file_is_resolved_by_matching_the_sources(release, tmp_path):
    path = shuffled(release, tmp_path)
    out = import_release(path, match={"ultrafeedback": release["ultrafeedback"], "orbench": release["orbench"]})
    train, stats = out["train"]
    by_text = dict(zip(train["prompt"].map(lambda p: p[-1]["content"]), types_of(train)))
    assert by_text["How do I bake bread number 3?"] == "harmless"
    assert by_text["How can I kill process 3 in Linux?"] == "ambiguous"
    assert stats["type_evidence"] == {"ability": 12, "match:orbench": 6, "match:ultrafeedback": 6}
    assert stats["refusal_resolution"]["position"]["usable"] is False


def test_unresolved_rows_stop_the_import_or_are_labelled_and_counted(release, tmp_path):
    path = shuffled(release, tmp_path)
    with pytest.raises(ValueError, match=r"12 'refusal' rows could not be told harmless or ambiguous.*--match"):
        import_release(path)
    assert not os.path.exists(tmp_path / "out")
    train, stats = import_release(path, match={"ultrafeedback": release["ultrafeedback"]}, unresolved="ambiguous")[
        "train"
    ]
    unresolved = train[train["data_source"] == "tars_release_refusal"]
    assert len(unresolved) == 6 and set(types_of(unresolved)) == {"ambiguous"}
    assert set(unresolved["extra_info"].map(lambda e: e["type_evidence"])) == {"unresolved"}
    resolution = stats["refusal_resolution"]
    assert resolution["unresolved"] == 6 and resolution["unresolved_as"] == "ambiguous"


def test_position_rule_is_checked_against_matches(release):
    train, stats = import_release(release["train"], match={"orbench": release["orbench"]})["train"]
    pos = stats["refusal_resolution"]["position"]
    assert pos["checked_against_match"] == 6 and pos["disagreements"] == 0
    assert stats["type_evidence"] == {"ability": 12, "match:orbench": 6, "position": 6}


@pytest.mark.parametrize(
    "column, value, match",
    [
        ("ability", "math", r"row 2: column 'ability' is 'math'"),
        ("prompt", [], r"row 2: column 'prompt': the prompt must be a non-empty list"),
        ("prompt", [{"role": "user", "content": "  "}], r"row 2: column 'prompt': the last user turn is empty"),
    ],
)
def test_bad_release_rows_are_named(release, tmp_path, column, value, match):
    df = pd.read_parquet(release["train"])
    df.at[2, column] = value
    path = str(tmp_path / "bad.parquet")
    df.to_parquet(path, index=False)
    with pytest.raises(ValueError, match=match) as err:
        import_release(path)
    assert path in str(err.value)


def test_imported_release_trains_through_verl_dataset_and_the_tars_manager(release, tiny_dir, tmp_path):
    """verl's RLHFDataset reads the imported file and verl's RewardLoopWorker scores it with the tars
    manager (tiny preset); the released file as it is stops at the manager (no prompt type)."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    from tars_verl.config import compose
    from tars_verl.reward.prompt_type import PromptTypeError
    from tars_verl.testing.verl_batch import Sample, make_reward_batch

    main(["--train", release["train"], "--val", release["test"], "--out", str(tmp_path / "out")])
    ds = verl_rl_dataset(tmp_path / "out" / "train.parquet", f"{tiny_dir}/policy", tmp_path / "cache")
    assert len(ds) == 24
    items = [ds[i] for i in range(len(ds))]
    cfg = compose(
        "tars_grpo",
        ["tars@reward.tars=tiny_cpu", f"actor_rollout_ref.model.path={tiny_dir}/policy", "reward.num_workers=1"],
    )
    worker = RewardLoopWorker(cfg)
    response = "<think>\nweigh it\n</think>\n\nHere is an answer."
    samples = [Sample(it["raw_prompt"], response, None, it["data_source"], dict(it["extra_info"])) for it in items]
    out = worker.loop.run_until_complete(worker.compute_score_batch(make_reward_batch(worker.input_tokenizer, samples)))
    got = [o["reward_extra_info"]["prompt_type"] for o in out]
    assert got == [it["extra_info"]["prompt_type"] for it in items]
    assert sorted(set(got)) == ["ambiguous", "harmful", "harmless"]
    for o in out:
        info = o["reward_extra_info"]
        assert info["format"] == 1.0
        role = "safety" if info["prompt_type"] == "harmful" else "helpfulness"
        assert o["reward_score"] == pytest.approx(info[role])
    raw = pd.read_parquet(release["train"]).iloc[0]
    as_released = Sample([dict(m) for m in raw["prompt"]], response, None, raw["data_source"], dict(raw["extra_info"]))
    with pytest.raises(PromptTypeError):
        worker.loop.run_until_complete(
            worker.compute_score_batch(make_reward_batch(worker.input_tokenizer, [as_released]))
        )
