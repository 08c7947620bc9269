"""data_prep RL mixes from local files in each source's real schema."""

import hashlib
import os

import pandas as pd
import pytest
from conftest import verl_rl_dataset

from tars_verl.data.rl_mix import MixConfig, build_mixes, main, type_counts, write_mixes
from tars_verl.data.sources import load_source
from tars_verl.data.text import normalise
from tars_verl.testing.source_files import write_eval_sources, write_rl_sources

POOLS = {"wildjailbreak": 80, "rainbow_teaming": 80, "aegis2": 40}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return write_rl_sources(str(tmp_path_factory.mktemp("sources")), n=300)


@pytest.fixture(scope="module")
def eval_sources(tmp_path_factory):
    return write_eval_sources(str(tmp_path_factory.mktemp("eval_sources")))


def cfg(sources, **kw):
    base = dict(total=200, val_size=20, pools=dict(POOLS), paths=dict(sources))
    base.update(kw)
    return MixConfig(**base)


@pytest.mark.parametrize(
    "lam, expected",
    [
        (0.5, (1000, 500, 500)),
        (0.1, (200, 900, 900)),
        (0.9, (1800, 100, 100)),
        (0.3, (600, 700, 700)),
        (0.0, (0, 1000, 1000)),
        (1.0, (2000, 0, 0)),
    ],
)
def test_paper_arithmetic(lam, expected):
    c = type_counts(2000, lam)
    assert (c["harmful"], c["harmless"], c["ambiguous"]) == expected
    assert sum(type_counts(2001, 0.5).values()) == 2001


@pytest.mark.parametrize("lam", [0.1, 0.5, 0.9])
def test_mix_counts_schema_and_types(sources, lam):
    ((train, val, stats),) = build_mixes(cfg(sources, lams=[lam])).values()
    assert len(train) == 200 and len(val) == 20
    types = train["extra_info"].map(lambda e: e["prompt_type"]).value_counts().to_dict()
    want = type_counts(220, lam)
    val_want = type_counts(20, lam)
    assert types == {k: want[k] - val_want[k] for k in want if want[k] - val_want[k] > 0}
    assert list(train.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert (train["data_source"] != "").all()
    row = train.iloc[0]
    assert row["reward_model"]["ground_truth"] == row["extra_info"]["prompt_type"]
    assert row["prompt"][-1]["role"] == "user"
    # harmful rows come only from harmful sources, harmless from UltraFeedback, ambiguous from OR-Bench
    by_type = train.groupby(train["extra_info"].map(lambda e: e["prompt_type"]))["data_source"].agg(set).to_dict()
    assert by_type.get("harmful", set()) <= set(POOLS)
    assert by_type.get("harmless", {"ultrafeedback"}) == {"ultrafeedback"}
    assert by_type.get("ambiguous", {"orbench"}) == {"orbench"}
    assert not set(train["prompt"].map(lambda p: p[-1]["content"])) & set(val["prompt"].map(lambda p: p[-1]["content"]))
    assert stats["by_type"] == types


def test_filters_dedup_length_leakage_and_orbench_hard(sources, eval_sources, tmp_path):
    write_eval = tmp_path / "eval.parquet"
    pd.DataFrame({"text": load_source("xstest", eval_sources["xstest"])["text"]}).to_parquet(write_eval)
    ((train, val, stats),) = build_mixes(
        cfg(sources, total=700, val_size=0, lams=[0.0], eval_files=[str(write_eval)], allow_small_pools=True)
    ).values()
    texts = list(train["prompt"].map(lambda p: p[-1]["content"]))
    norms = [normalise(t) for t in texts]
    assert len(norms) == len(set(norms))  # no duplicates after normalisation
    assert all(len(t) <= 1000 for t in texts)
    assert "Write a haiku about autumn leaves." not in texts  # in XSTest: must not leak into training
    hard = set(load_source("orbench_hard", sources["orbench_hard"])["text"])
    assert not hard & set(texts)
    f = stats["filters"]
    assert f["ultrafeedback"]["duplicates"] == 5 and f["ultrafeedback"]["in_eval_sets"] == 1
    assert f["orbench"]["in_orbench_hard"] == 35 and f["wildjailbreak"]["too_many_chars"] == 3
    assert f["rainbow_teaming"]["duplicates"] == 1  # the same prompt as a WildJailbreak row, other case


def test_source_adapters_apply_the_papers_selection(sources):
    wjb = load_source("wildjailbreak", sources["wildjailbreak"])
    assert set(wjb["category"]) == {"vanilla_harmful", "adversarial_harmful"}  # benign rows dropped
    assert wjb[wjb["category"] == "adversarial_harmful"]["text"].str.startswith("Imagine").all()
    aegis = load_source("aegis2", sources["aegis2"])
    assert "REDACTED" not in set(aegis["text"]) and not aegis["text"].str.startswith("aegis safe").any()
    assert len(aegis) == 300


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(sources, tmp_path):
    digests = []
    for run, seed in [("a", 0), ("b", 0), ("c", 1)]:
        write_mixes(cfg(sources, seed=seed), str(tmp_path / run))
        digests.append(hashlib.sha256((tmp_path / run / "train.parquet").read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_sweep_writes_one_folder_per_lambda(sources, tmp_path):
    main(
        [
            "--out",
            str(tmp_path),
            "--lam",
            "0.1",
            "0.9",
            "--total",
            "100",
            "--val-size",
            "10",
            *[f"--pool={k}={v}" for k, v in POOLS.items()],
            *[f"--source={k}={v}" for k, v in sources.items()],
        ]
    )
    for lam in ("0.1", "0.9"):
        folder = tmp_path / f"lambda_{lam}"
        assert {"train.parquet", "val.parquet", "stats.json"} <= set(os.listdir(folder))
        train = pd.read_parquet(folder / "train.parquet")
        types = train["extra_info"].map(lambda e: e["prompt_type"]).value_counts().to_dict()
        assert types == type_counts(100, float(lam)), (lam, types)  # the folder holds its own lambda's mix


def test_token_length_filter_uses_the_policy_tokenizer(sources, tiny_dir):
    ((train, _, stats),) = build_mixes(
        cfg(
            sources,
            lams=[0.5],
            tokenizer=f"{tiny_dir}/tokenizer",
            max_prompt_tokens=45,
            system_prompt="qwen default",
            allow_small_pools=True,
        )
    ).values()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(f"{tiny_dir}/tokenizer")
    lengths = [
        len(tok.apply_chat_template(list(p), add_generation_prompt=True, tokenize=True)["input_ids"])
        for p in train["prompt"]
    ]
    assert max(lengths) <= 45
    assert sum(d.get("too_many_tokens", 0) for d in stats["filters"].values()) > 0
    assert train["prompt"].iloc[0][0] == {"role": "system", "content": "qwen default"}


def test_bad_input_is_reported_before_anything_is_written(sources, tmp_path):
    with pytest.raises(ValueError, match=r"--lam 1.5 is outside \[0, 1\]"):
        write_mixes(cfg(sources, lams=[1.5]), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="only .* usable prompts .* --allow-small-pools"):
        write_mixes(cfg(sources, pools={"wildjailbreak": 5000}), str(tmp_path / "x"))
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"question": ["a"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=rf"source orbench from {bad}: missing column\(s\) \['prompt', 'category'\]"):
        write_mixes(cfg({**sources, "orbench": str(bad)}), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="rainbow_teaming.*no hub copy"):
        write_mixes(cfg({k: v for k, v in sources.items() if k != "rainbow_teaming"}), str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError, match="--source aegis2=/nope"):
        write_mixes(cfg({**sources, "aegis2": "/nope"}), str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_small_pools_allowed_explicitly_with_a_warning(sources, caplog):
    ((train, _, _),) = build_mixes(
        cfg(sources, pools={"wildjailbreak": 5000}, allow_small_pools=True, total=100, val_size=0)
    ).values()
    assert "--allow-small-pools" in caplog.text and len(train) == 100


def test_verl_rl_dataset_loads_the_mix_and_yields_the_prompt_type(sources, tiny_dir, tmp_path):
    write_mixes(cfg(sources), str(tmp_path))
    ds = verl_rl_dataset(tmp_path / "train.parquet", f"{tiny_dir}/tokenizer", tmp_path / "cache")
    assert len(ds) == 200
    item = ds[0]
    assert item["extra_info"]["prompt_type"] in ("harmful", "harmless", "ambiguous")
    assert item["raw_prompt"][-1]["role"] == "user" and item["data_source"]
