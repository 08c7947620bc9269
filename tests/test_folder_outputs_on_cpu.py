"""Multi-file outputs: a folder that holds one command's outputs is staged and renamed whole
(tars_verl/data/files.py: write_folder), outputs that share a folder with other files are replaced together and
the earlier run's leftovers removed (write_together(..., remove=)). A folder never mixes two runs."""

import json
import os

import pandas as pd
import pytest

import tars_verl.data.files as files_mod
from tars_verl.data.release import main as import_main
from tars_verl.testing.source_files import write_tars_release


@pytest.fixture
def release(tmp_path):
    return write_tars_release(str(tmp_path / "release"))


def listing(folder):
    return sorted(os.listdir(folder))


def test_release_rerun_without_val_leaves_no_stale_val_file(release, tmp_path):
    out = tmp_path / "out"
    import_main(["--train", release["train"], "--val", release["test"], "--out", str(out)])
    assert listing(out) == ["stats.json", "train.parquet", "val.parquet"]
    import_main(["--train", release["train"], "--out", str(out)])
    # Before: val.parquet of the first run stayed beside the new train.parquet.
    assert listing(out) == ["stats.json", "train.parquet"]
    assert "val" not in json.loads((out / "stats.json").read_text())
    assert not [e for e in os.listdir(tmp_path) if e.startswith(".out.")]  # no staging folder left behind


def test_release_import_that_fails_while_writing_leaves_the_old_folder_as_it_was(release, tmp_path, monkeypatch):
    out = tmp_path / "out"
    import_main(["--train", release["train"], "--val", release["test"], "--out", str(out)])
    before = {name: (out / name).read_bytes() for name in listing(out)}
    real, calls = pd.DataFrame.to_parquet, []

    def fail_on_the_second_file(df, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(df, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail_on_the_second_file)
    with pytest.raises(OSError, match="disk full"):
        import_main(["--train", release["test"], "--val", release["train"], "--out", str(out)])
    # Before: train.parquet was replaced before val.parquet was written: a folder of two runs.
    assert {name: (out / name).read_bytes() for name in listing(out)} == before
    assert not [e for e in os.listdir(tmp_path) if e.startswith(".out.")]


def test_a_folder_with_files_of_its_own_is_refused_and_nothing_is_written(release, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "my_notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"data holds \['my_notes.txt'\] besides this command's outputs"):
        import_main(["--train", release["train"], "--out", str(out)])
    assert listing(out) == ["my_notes.txt"]


def test_write_folder_replaces_the_folder_in_one_step(tmp_path):
    folder = tmp_path / "mix"
    files_mod.write_folder(str(folder), {"train.parquet": pd.DataFrame({"a": [1]}), "stats.json": {"run": 1}})
    inode = os.stat(folder).st_ino
    files_mod.write_folder(str(folder), {"train.parquet": pd.DataFrame({"a": [2]}), "stats.json": {"run": 2}})
    assert os.stat(folder).st_ino != inode  # a new folder took the old one's place, not files renamed into it
    assert pd.read_parquet(folder / "train.parquet")["a"].tolist() == [2]
    assert json.loads((folder / "stats.json").read_text()) == {"run": 2}
    assert listing(tmp_path) == ["mix"]


def test_an_evaluation_report_keeps_no_plot_of_an_earlier_run(tmp_path):
    from tars_verl.eval.report import write_report

    out = tmp_path / "report"
    rep = {"points": [[0.0, 0.0], [1.0, 1.0]], "labels": [0, 1], "margin": 0.5, "n_safe": 1, "n_attack": 1}
    meta = {"models": ["a", "b"], "generation": {}}
    write_report(str(out), {}, {"a": rep, "b": rep}, meta)
    assert {"umap_a.png", "umap_b.png"} <= set(listing(out))
    write_report(str(out), {}, {"a": rep}, {**meta, "models": ["a"]})
    # Before: umap_b.png of the first run stayed beside the new report.
    assert listing(out) == ["report.md", "results.json", "umap_a.png"]
