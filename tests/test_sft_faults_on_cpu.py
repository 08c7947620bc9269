"""SFT trace generator against a misbehaving teacher and careless reruns: nothing lost, nothing mixed."""

import asyncio
import json
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import sft_generate_args

from tars_verl.data.files import exclusive_writer, read_done
from tars_verl.data.sft_traces import TraceConfig, generate_traces, main

PROMPTS = pd.DataFrame(
    {
        "prompt_id": [f"a-{i}" for i in range(4)],
        "source": ["x"] * 4,
        "source_index": range(4),
        "text": [f"request {i}" for i in range(4)],
    }
)


def cfg(tmp_path, url, **kw):
    return TraceConfig(out=str(tmp_path / "sft"), url=url, model="teacher", samples=1, max_retries=0, **kw)


def test_null_message_is_a_failed_sample_and_the_run_goes_on(tmp_path, server, caplog):
    def null_message(reply):
        reply["choices"][0]["message"] = None
        return reply

    server.script = [null_message, {"choices": []}, {"choices": [{"message": {"content": ["parts"]}}]}]
    c = cfg(tmp_path, server.url + "/v1", max_concurrency=1)
    new, failures = asyncio.run(generate_traces(c, PROMPTS))  # before: AttributeError ended the whole run
    assert (new, failures) == (1, 3) and len(read_done(str(tmp_path / "sft" / "traces.jsonl"))) == 1
    assert f"teacher {server.url}/v1/chat/completions" in caplog.text and "not an object" in caplog.text
    new, failures = asyncio.run(generate_traces(c, PROMPTS))  # a rerun asks only for the three that failed
    assert (new, failures) == (3, 0)


def test_second_writer_on_the_same_out_is_refused(tmp_path, server):
    log = tmp_path / "sft" / "traces.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tars_verl.data.files import exclusive_writer\n"
            f"with exclusive_writer({str(log)!r}):\n    print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=rf"{log} is being written by pid {holder.pid} on "):
            asyncio.run(generate_traces(cfg(tmp_path, server.url + "/v1"), PROMPTS))
        assert server.requests == []
    finally:
        holder.communicate("", timeout=30)
    asyncio.run(generate_traces(cfg(tmp_path, server.url + "/v1"), PROMPTS))  # released on exit
    with exclusive_writer(str(log)):
        with pytest.raises(RuntimeError, match="is being written by"):
            with exclusive_writer(str(log)):
                pass


def test_corrupt_log_stops_before_any_request_and_keeps_the_file(tmp_path, server):
    c = cfg(tmp_path, server.url + "/v1")
    asyncio.run(generate_traces(c, PROMPTS))
    log = tmp_path / "sft" / "traces.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    before, sent = log.read_bytes(), len(server.requests)
    with pytest.raises(ValueError, match="line 2 is not a valid record"):
        asyncio.run(generate_traces(c, PROMPTS))
    assert log.read_bytes() == before and len(server.requests) == sent


def cli(tmp_path, server, *extra, model="teacher"):
    return sft_generate_args(tmp_path / "sft", server, "--max-retries", "0", *extra, model=model)


def test_timeout_flag_bounds_a_hung_teacher(tmp_path, server, monkeypatch):
    import tars_verl.data.sft_traces as st

    monkeypatch.setattr(st, "select_prompts", lambda c: PROMPTS)
    server.latency_s = 5.0
    start = time.monotonic()
    with pytest.raises(SystemExit, match="4 samples missing"):
        main(cli(tmp_path, server, "--timeout", "0.3"))
    assert time.monotonic() - start < 4.0  # the default (600 s) would wait for the 5 s reply


def test_retry_dropped_asks_again_for_empty_reasoning(tmp_path, server, monkeypatch, capsys):
    import tars_verl.data.sft_traces as st

    monkeypatch.setattr(st, "select_prompts", lambda c: PROMPTS)

    def no_reasoning(reply):  # a teacher served without its reasoning parser
        reply["choices"][0]["message"].pop("reasoning_content")
        return reply

    server.script = [no_reasoning] * 4
    with pytest.raises(SystemExit, match="no usable traces.*rerun with --retry-dropped"):
        main(cli(tmp_path, server))
    sent = len(server.requests)
    with pytest.raises(SystemExit, match="--retry-dropped"):  # a plain rerun sends nothing, and says so
        main(cli(tmp_path, server))
    assert len(server.requests) == sent
    main(cli(tmp_path, server, "--retry-dropped"))
    assert len(server.requests) == sent + 4
    assert {p["seed"] for _, p in server.requests[sent:]} != {p["seed"] for _, p in server.requests[:4]}
    stats = json.loads((tmp_path / "sft" / "sft_stats.json").read_text())
    assert stats["kept"] == 4 and stats["dropped_empty_reasoning"] == 0


def test_an_out_folder_never_mixes_two_teachers(tmp_path, server, monkeypatch):
    import tars_verl.data.sft_traces as st

    monkeypatch.setattr(st, "select_prompts", lambda c: PROMPTS)
    main(cli(tmp_path, server))
    with pytest.raises(
        ValueError,
        match=r"holds traces made with other settings \(model: 'teacher' there, "
        r"'teacher-tags' now",
    ):
        main(cli(tmp_path, server, model="teacher-tags"))
