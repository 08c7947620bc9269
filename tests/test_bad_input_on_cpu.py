"""Bad user files: a clear error naming file, column, row or line; nothing turned into text; nothing deleted."""

import json
import os

import pandas as pd
import pytest

from tars_verl.data.files import read_done, read_table
from tars_verl.data.rl_mix import eval_prompt_set
from tars_verl.data.rl_mix import main as rl_mix_main
from tars_verl.data.sft_traces import main as sft_main
from tars_verl.data.sources import load_source
from tars_verl.testing.source_files import write_rl_sources


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize(
    "bad, shown",
    [
        ([{"role": "user", "content": "hi"}], "list [{'role': 'user'"),
        ({"text": "hi"}, "dict {'text': 'hi'}"),
        (42, "int 42"),
        (None, "null"),
    ],
)
def test_non_string_prompt_is_an_error_naming_file_column_row(tmp_path, bad, shown):
    # Before: astype(str) made "[{'role': 'user', ...}]" or "None" a training prompt.
    path = jsonl(tmp_path / "uf.jsonl", [{"prompt": "fine"}, {"prompt": "also fine"}, {"prompt": bad}])
    with pytest.raises(ValueError) as err:
        load_source("ultrafeedback", path)
    msg = str(err.value)
    assert path in msg and "column 'prompt'" in msg and f"row 2: {shown}" in msg


def test_non_string_prompt_in_parquet_names_the_source_column(tmp_path):
    path = str(tmp_path / "wjb.parquet")
    pd.DataFrame(
        {
            "vanilla": [["a"], ["b"]],
            "adversarial": ["", ""],
            "data_type": ["vanilla_harmful"] * 2,
        }
    ).to_parquet(path)  # a chat-messages-like list column, read back as numpy arrays
    with pytest.raises(ValueError, match=r"wjb.parquet: column 'vanilla/adversarial' .* row 0: ndarray"):
        load_source("wildjailbreak", path)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("empty.csv", b"", r"empty.csv: the file is empty \(0 bytes\)"),
        ("empty.jsonl", b"", r"empty.jsonl: the file is empty"),
        ("latin1.csv", "prompt\nna\xefve caf\xe9\n".encode("latin-1"), r"latin1.csv: not UTF-8 text \(line 2, byte 2"),
        ("latin1.jsonl", '{"prompt": "caf\xe9"}\n'.encode("latin-1"), r"latin1.jsonl: not UTF-8 text \(line 1"),
        ("broken.jsonl", b'{"prompt": "a"}\n{"prompt": \n', r"broken.jsonl: line 2 is not valid JSON"),
        ("list.jsonl", b'{"prompt": "a"}\n["prompt"]\n', r"list.jsonl: line 2 is a JSON list, not an object"),
        ("broken.json", b'{"data": [', r"broken.json: cannot be read as json"),
        ("broken.parquet", b"PAR1 not really", r"broken.parquet: cannot be read as parquet"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_source("ultrafeedback", str(path))


def test_a_folder_is_not_a_data_file(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        read_table(str(tmp_path))


def test_eval_exclusion_file_with_non_text_prompts_is_an_error(tmp_path):
    path = str(tmp_path / "ev.parquet")
    pd.DataFrame(
        {"prompt": [[{"role": "user", "content": "ok"}], [{"role": "system", "content": "no user"}]]}
    ).to_parquet(path)
    with pytest.raises(ValueError, match=r"ev.parquet: column 'prompt' row 1: expected text or chat messages"):
        eval_prompt_set([path])
    path = jsonl(tmp_path / "ev.jsonl", [{"text": "ok"}, {"text": 7}])
    with pytest.raises(ValueError, match=r"ev.jsonl: column 'text' .* row 1: int 7"):
        eval_prompt_set([path])


# -- resumable logs ------------------------------------------------------------------------------
def record(i):
    return json.dumps({"prompt_id": f"p{i}", "sample_idx": 0, "reasoning": "r", "answer": "a"})


def test_corrupt_middle_line_is_an_error_and_nothing_is_deleted(tmp_path):
    log = tmp_path / "traces.jsonl"
    log.write_text("\n".join([record(0), record(1), '{"prompt_id": "p2", "sampl', *map(record, range(3, 40))]) + "\n")
    before = log.read_bytes()
    with pytest.raises(ValueError, match=rf"{log}: line 3 is not a valid record.*Nothing was deleted"):
        read_done(str(log))
    assert log.read_bytes() == before  # the 37 paid lines after it are still there


def test_record_without_keys_in_the_middle_is_an_error(tmp_path):
    log = tmp_path / "traces.jsonl"
    log.write_text("\n".join([record(0), json.dumps({"prompt_id": "p1"}), record(2)]) + "\n")
    with pytest.raises(ValueError, match="line 2 is not a valid record .*KeyError"):
        read_done(str(log))


def test_only_a_torn_last_line_is_dropped(tmp_path):
    log = tmp_path / "traces.jsonl"
    torn = '{"prompt_id": "p9", "reasoning": "caf\u00e9'.encode()[:-1]  # cut inside a UTF-8 character too
    log.write_bytes(("\n".join(map(record, range(5))) + "\n").encode() + torn)
    assert len(read_done(str(log))) == 5
    assert log.read_text() == "\n".join(map(record, range(5))) + "\n"


def test_whole_last_record_without_newline_is_kept_and_the_next_line_starts_clean(tmp_path):
    log = tmp_path / "traces.jsonl"
    log.write_text(record(0) + "\n" + record(1))  # complete, newline not yet written
    assert len(read_done(str(log))) == 2
    with open(log, "a") as f:
        f.write(record(2) + "\n")
    assert len(read_done(str(log))) == 3  # before: line 2 became '{...}{...}' and was cut with line 3


# -- data_prep command lines ---------------------------------------------------------------------
def test_eval_dir_without_parquet_is_an_error(tmp_path):
    sources = write_rl_sources(str(tmp_path / "src"), n=60)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "harmbench.jsonl").write_text('{"prompt": "x"}\n')  # not parquet: never read
    args = [
        "--out",
        str(tmp_path / "mix"),
        "--total",
        "40",
        "--val-size",
        "0",
        "--eval-dir",
        str(tmp_path / "eval"),
        *[f"--source={k}={v}" for k, v in sources.items()],
        "--pool=wildjailbreak=10",
        "--pool=rainbow_teaming=10",
        "--pool=aegis2=5",
    ]
    with pytest.raises(ValueError, match=r"--eval-dir .*eval holds no .parquet file.*leakage filter not checked"):
        rl_mix_main(args)
    assert not os.path.exists(tmp_path / "mix")


def test_sft_convert_rejects_non_text_traces(tmp_path):
    src = jsonl(
        tmp_path / "old.jsonl",
        [{"prompt": "q", "reasoning": "r", "answer": "a"}, {"prompt": "q2", "reasoning": ["r"], "answer": "a"}],
    )
    with pytest.raises(ValueError, match=r"old.jsonl: column 'reasoning' .* row 1: list \['r'\]"):
        sft_main(["convert", "--traces", src, "--out", str(tmp_path / "out")])
    src = jsonl(tmp_path / "old2.jsonl", [{"prompt": None, "reasoning": "r", "answer": "a"}])
    with pytest.raises(ValueError, match=r"old2.jsonl: column 'prompt' .* row 0: null"):
        sft_main(["convert", "--traces", src, "--out", str(tmp_path / "out")])


def test_outputs_of_one_run_are_replaced_together_or_not_at_all(tmp_path):
    from tars_verl.data.files import write_together

    train, stats = tmp_path / "train.parquet", tmp_path / "stats.json"
    write_together({str(train): pd.DataFrame({"a": [1]}), str(stats): {"run": 1}})
    unwritable = pd.DataFrame({"a": [[1], "x"]})  # pyarrow cannot store this column
    with pytest.raises(Exception, match="Conversion failed|cannot mix"):
        write_together(
            {str(train): pd.DataFrame({"a": [2]}), str(tmp_path / "val.parquet"): unwritable, str(stats): {"run": 2}}
        )
    assert pd.read_parquet(train)["a"].tolist() == [1] and json.loads(stats.read_text()) == {"run": 1}
    assert sorted(os.listdir(tmp_path)) == ["stats.json", "train.parquet"]  # no temp file left behind


def test_attack_and_behaviour_files_with_non_text_cases_are_errors(tmp_path):
    from tars_verl.eval.prompts import load_attack_file, load_behaviors

    cases = tmp_path / "gcg.json"
    cases.write_text(json.dumps({"b1": ["a real attack", {"text": "nested"}]}))
    with pytest.raises(ValueError, match=r"gcg.json: behavior 'b1' test case 1 is dict"):
        load_attack_file(str(cases), "gcg", {"b1": {"behavior": "do harm"}})
    behaviors = jsonl(tmp_path / "behaviors.jsonl", [{"BehaviorID": "b1", "Behavior": None}])
    with pytest.raises(ValueError, match=r"behaviors.jsonl: column 'Behavior' .* row 0: null"):
        load_behaviors(behaviors)


def test_hub_copy_drops_null_prompts_with_a_count_but_rejects_lists(monkeypatch, caplog):
    import datasets

    def fake_hub(rows):
        monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list(rows))

    fake_hub([{"prompt": "a"}, {"prompt": None}, {"prompt": "b"}])
    df = load_source("ultrafeedback")
    assert df["text"].tolist() == ["a", "b"] and df["source_index"].tolist() == [0, 2]
    assert "dropped 1 row(s) with a null prompt" in caplog.text
    fake_hub([{"prompt": [{"role": "user", "content": "a"}]}])  # a chat-format hub column
    with pytest.raises(ValueError, match=r"HuggingFaceH4/ultrafeedback_binarized split train_prefs: column 'prompt'"):
        load_source("ultrafeedback")


def test_sweep_folder_with_lambdas_from_an_earlier_run_is_flagged(tmp_path, caplog):
    from tars_verl.data.rl_mix import MixConfig, write_mixes

    sources = write_rl_sources(str(tmp_path / "src"), n=60)
    cfg = dict(total=40, val_size=0, paths=sources, pools={"wildjailbreak": 10, "rainbow_teaming": 10, "aegis2": 5})
    write_mixes(MixConfig(lams=[0.3, 0.5], **cfg), str(tmp_path / "mix"))
    assert "earlier run" not in caplog.text
    write_mixes(MixConfig(lams=[0.5, 0.6], seed=1, **cfg), str(tmp_path / "mix"))
    assert "also holds ['lambda_0.3'] from an earlier run" in caplog.text
