import pandas as pd
import pytest

from tars_verl.data.eval_sets import EVAL_SETS, build_eval_sets, main
from tars_verl.data.rl_mix import MixConfig, build_mixes
from tars_verl.testing.source_files import write_eval_sources, write_rl_sources


@pytest.fixture(scope="module")
def eval_sources(tmp_path_factory):
    return write_eval_sources(str(tmp_path_factory.mktemp("eval_src")))


def test_every_set_with_categories_and_prompt_types(eval_sources):
    sets = build_eval_sets(eval_sources, wildchat_n=10)
    assert set(sets) == set(EVAL_SETS)
    small = sets["strongreject_small"]
    assert len(small) == 60 and small["category"].value_counts().tolist() == [10] * 6
    # the official list as given, in its order: not a sample of the full set
    assert (
        small["prompt"].map(lambda p: p[-1]["content"]).tolist()
        == pd.read_csv(eval_sources["strongreject_small"])["forbidden_prompt"].tolist()
    )
    assert (small["data_source"] == "strongreject_small").all()
    assert len(sets["strongreject"]) == 90
    assert len(sets["xstest_safe"]) == 10 and len(sets["xstest_unsafe"]) == 6
    assert set(sets["xstest_safe"]["extra_info"].map(lambda e: e["prompt_type"])) == {"harmless"}
    assert set(sets["xstest_unsafe"]["extra_info"].map(lambda e: e["prompt_type"])) == {"harmful"}
    sb = sets["sorry_bench"]
    assert len(sb) == 44  # base prompt style only
    assert sb["category_group"].value_counts().to_dict() == {
        "assistance with crimes or torts": 19,
        "potentially inappropriate topics": 15,
        "hate speech generation": 5,
        "potentially unqualified advice": 5,
    }
    wc = sets["wildchat_nontoxic"]
    assert (
        len(wc) == 10
        and not wc["prompt"]
        .map(lambda p: p[-1]["content"])
        .isin([f"wildchat request {i}" for i in range(0, 40, 5)])
        .any()
    )  # toxic rows never sampled
    for df in sets.values():
        assert {"data_source", "prompt", "ability", "reward_model", "extra_info", "category"} <= set(df.columns)


def test_cli_writes_parquet_that_the_rl_mix_excludes(eval_sources, tmp_path):
    main(
        ["--out", str(tmp_path / "eval"), *[f"--source={k}={v}" for k, v in eval_sources.items()], "--wildchat-n", "5"]
    )
    assert len(pd.read_parquet(tmp_path / "eval" / "xstest_safe.parquet")) == 10
    rl = write_rl_sources(str(tmp_path / "rl"), n=300)
    files = [str(p) for p in (tmp_path / "eval").glob("*.parquet")]
    ((train, _, stats),) = build_mixes(
        MixConfig(
            total=400,
            val_size=0,
            lams=[0.0],
            paths=rl,
            eval_files=files,
            pools={"wildjailbreak": 10, "rainbow_teaming": 10, "aegis2": 10},
            allow_small_pools=True,
        )
    ).values()
    assert stats["filters"]["ultrafeedback"]["in_eval_sets"] == 1


def test_unknown_set_and_missing_column(eval_sources, tmp_path):
    with pytest.raises(ValueError, match="unknown evaluation set"):
        build_eval_sets(eval_sources, only=["advbench"])
    bad = tmp_path / "sr.csv"
    pd.DataFrame({"question": ["x"], "category": ["c"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=rf"{bad}: missing column\(s\) \['prompt'\]"):
        build_eval_sets({**eval_sources, "strongreject": str(bad)}, only=["strongreject"])


def test_official_strongreject_csv_column_name_is_accepted(tmp_path):
    official = tmp_path / "strongreject_small_dataset.csv"
    pd.DataFrame({"category": ["Violence"] * 3, "source": ["x"] * 3, "forbidden_prompt": ["a", "b", "c"]}).to_csv(
        official, index=False
    )
    sets = build_eval_sets({"strongreject": str(official)}, only=["strongreject"])
    assert list(sets["strongreject"]["prompt"].map(lambda p: p[-1]["content"])) == ["a", "b", "c"]


def test_official_strongreject_small_is_fetched_by_url_and_its_provenance_recorded(eval_sources, server, tmp_path):
    import json

    from tars_verl.data.eval_sets import STRONGREJECT_SMALL_URL

    server.files["/strongreject_small_dataset.csv"] = open(eval_sources["strongreject_small"]).read()
    url = server.url + "/strongreject_small_dataset.csv"
    main(
        [
            "--out",
            str(tmp_path / "eval"),
            "--only",
            "strongreject_small",
            "xstest_safe",
            f"--source=strongreject_small={url}",
            f"--source=xstest={eval_sources['xstest']}",
        ]
    )
    small = pd.read_parquet(tmp_path / "eval" / "strongreject_small.parquet")
    assert small["prompt"].map(lambda p: p[-1]["content"]).iloc[0] == "official small prompt Disinfor 0"
    stats = json.loads((tmp_path / "eval" / "stats.json").read_text())["sets"]
    assert stats["strongreject_small"]["from"] == url and len(stats["strongreject_small"]["sha256"]) == 64
    assert stats["strongreject_small"]["official_shape_60_by_6x10"] is True
    assert stats["xstest_safe"]["from"] == eval_sources["xstest"]
    assert STRONGREJECT_SMALL_URL.endswith(
        "alexandrasouly/strongreject/main/strongreject_dataset/strongreject_small_dataset.csv"
    )


def test_strongreject_small_copy_is_checked(tmp_path):
    bad = tmp_path / "small.csv"
    pd.DataFrame({"category": ["Violence"], "prompt": ["x"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['source', 'forbidden_prompt'\]"):
        build_eval_sets({"strongreject_small": str(bad)}, only=["strongreject_small"])
    with pytest.raises(OSError, match="cannot read /no/small.csv"):
        build_eval_sets({"strongreject_small": "/no/small.csv"}, only=["strongreject_small"])
