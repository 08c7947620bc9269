"""General capability for a model that reasons before it answers (``--capability``), on the real tiny responder.

The responder (tars_verl/testing/served_models.py) answers any chat with ``<think>\\n...\\n</think>\\n\\n{answer}``.
The task here is shaped like SQuAD v2 in lm-eval: greedy, stop at the first ``"\\n"``, exact match. lm-eval alone
stops the model right after ``<think>``; the evaluation must score the answer after ``</think>``, with the run's
generation budget, through lm-eval's in-process ``hf`` back end and through a real vLLM server
(``local-chat-completions``, which also sends the task's stop sequences to the server).
"""

import json

import pytest

from tars_verl.eval.cli import main
from tars_verl.testing import served_models as sm

pytestmark = pytest.mark.slow

TASK = """task: think_then_answer
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until:
    - "\\n"
  do_sample: false
metric_list:
  - metric: exact_match
metadata:
  version: 1.0
"""


@pytest.fixture(scope="module")
def think_task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("think_task")
    data = folder / "think_then_answer.jsonl"
    rows = [{"question": f"What do you say to request {i}?", "answer": sm.TEACHER_ANSWER} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "think_then_answer.yaml").write_text(TASK.format(data=data))
    return folder


def capability(out, model_flags, think_task, max_new_tokens):
    main(
        [
            *model_flags,
            "--out",
            str(out),
            "--max-new-tokens",
            str(max_new_tokens),
            "--capability",
            "think_then_answer",
            "--capability-include",
            str(think_task),
            "--capability-batch-size",
            "3",
        ]
    )
    results = json.loads((out / "results.json").read_text())
    (row,) = [r for r in results["capability"] if r["metric"] == "exact_match"]
    return row, results, (out / "report.md").read_text()


def test_the_answer_after_think_is_scored_with_the_runs_budget(served_models, think_task, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    flags = ["--model", f"tiny={served_models}/responder", "--backend", "hf"]
    row, results, report = capability(tmp_path / "a", flags, think_task, 64)
    assert row["value"] == 1.0 and row["n"] == 3  # lm-eval alone scores "<think>": 0.0
    settings = results["meta"]["capability"]
    assert settings["max_gen_toks"] == 64 and settings["lm_eval"] == "0.4.13"
    (task,) = settings["tasks"]["tiny"]
    assert task["task"] == "think_then_answer" and task["version"] == 1.0
    assert task["generation_kwargs_task"]["until"] == ["\n"]  # the task's own stop ...
    assert task["generation_kwargs_sent"] == {"until": [], "max_gen_toks": 64, "do_sample": False}  # ... on the answer
    assert "lm-eval 0.4.13; tasks think_then_answer v1.0 (0-shot)" in report
    assert "generation budget 64 tokens for every generative task" in report
    # The budget is the run's: with fewer tokens than the reasoning takes, no answer comes out.
    row, _, _ = capability(tmp_path / "b", flags, think_task, 12)
    assert row["value"] == 0.0


def test_the_same_through_a_real_vllm_server(vllm_servers, think_task, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    lm = vllm_servers["lm"]
    flags = ["--model", "tiny=tiny-policy", "--backend", "openai", "--openai-url", lm.url + "/v1"]
    row, results, _ = capability(tmp_path / "c", flags, think_task, 64)
    assert row["value"] == 1.0 and row["n"] == 3


def test_a_task_whose_helpers_cannot_be_imported_stops_the_run_before_any_generation(tmp_path):
    """lm-eval imports a task's ``!function`` helpers only when it builds the task, after the safety generations;
    minerva_math500's need lm-eval's math extra. The check at start-up loads them first."""
    (tmp_path / "utils.py").write_text("import no_such_module_for_tars_tests\n\ndef process_docs(ds):\n    return ds\n")
    (tmp_path / "needs_helpers.yaml").write_text(
        TASK.format(data=tmp_path / "x.jsonl").replace("think_then_answer", "needs_helpers")
        + "process_docs: !function utils.process_docs\n"
    )
    args = ["--model", "m=/nonexistent", "--out", str(tmp_path / "o"), "--capability", "needs_helpers"]
    with pytest.raises(ValueError, match="needs_helpers.*cannot be loaded.*no_such_module_for_tars_tests"):
        main([*args, "--capability-include", str(tmp_path)])
