"""No secret leaves the process: one scrubber (tars_verl/redaction.py) for every form a credential takes, applied to
exceptions, log records, stdout/stderr and every file the project writes.

The end-to-end checks plant an API key (an environment variable named by a config), URL passwords and a secret query
value, let the server echo the ``Authorization`` header it receives into its replies, then look for every planted
value and its encoded forms in every output file, the captured output and the log records. The training side is
tests/test_grpo_served_rm_on_cpu.py (the same check around a real GRPO run).
"""

import base64
import json
import logging
import os
import subprocess
import sys
import urllib.parse

import pandas as pd
import pytest
from conftest import FAST, items, run

from tars_verl.scorers import ScorerError, build_scorer


def forms(secret: str, user: str | None = None) -> set[str]:
    """What a leak of ``secret`` looks like: raw, percent-encoded, base64 (and the Basic header's base64 of
    user:secret)."""
    out = {secret, urllib.parse.quote(secret, safe=""), base64.b64encode(secret.encode()).decode().rstrip("=")}
    if user is not None:
        out.add(base64.b64encode(f"{user}:{secret}".encode()).decode().rstrip("="))
    return out


def leaks(text: str, planted: dict[str, set[str]]) -> list[str]:
    return sorted(name for name, fs in planted.items() for f in fs if f in text)


def everything_written(folder) -> str:
    """Every file under ``folder`` as text: raw bytes (parquet metadata, PNG, JSON, markdown) and each parquet file's
    rows decoded (its data pages are compressed)."""
    parts = []
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            parts.append(path)
            with open(path, "rb") as f:
                parts.append(f.read().decode("utf-8", errors="replace"))
            if name.endswith(".parquet"):
                parts.append(pd.read_parquet(path).to_json())
    return "\n".join(parts)


# -- the scrubber -------------------------------------------------------------------------------------------------
KEY = "sk-unit-test-0123456789abcdef"
PASSWORD = "pw-unit-9f8e7d"


@pytest.mark.parametrize(
    "text",
    [
        f"bad key {KEY}",
        f"bad key {urllib.parse.quote(KEY)} (percent-encoded)",
        f"key in base64: {base64.b64encode(KEY.encode()).decode()}",
        f"POST http://alice:{PASSWORD}@10.0.0.1:8000/v1/moderations failed",
        f"echoed header: Basic {base64.b64encode(f'alice:{PASSWORD}'.encode()).decode()}",
        f"{{'Authorization': 'Bearer {KEY}'}}",
        f"GET https://host/v1/models?api-version=2&key={PASSWORD}",
        f"https://host/file.pkl?token={PASSWORD}&x=1",
        f'{{"api_key": "{PASSWORD}", "model": "m"}}',
        f"export OPENAI_API_KEY={PASSWORD}",
    ],
)
def test_every_form_of_a_credential_is_scrubbed(text):
    from tars_verl.redaction import register_secret, scrub

    register_secret(KEY)
    register_secret(PASSWORD, username="alice")
    shown = scrub(text)
    assert not leaks(shown, {"key": forms(KEY), "password": forms(PASSWORD, "alice")}), shown
    assert "***" in shown


def test_text_without_credentials_is_left_alone():
    from tars_verl.redaction import redact_url, scrub

    text = "Basic checks passed; Score: 7; max_tokens: 512; /data/eval/harmbench.parquet row 3; key points"
    assert scrub(text) == text
    assert redact_url("https://u:p@h:8/v1?api-version=2&api_key=k") == "https://***@h:8/v1?api-version=2&api_key=***"


def test_logs_streams_and_uncaught_errors_of_an_entry_point_are_scrubbed(tmp_path):
    """A command's process after install(): log records (of any logger, handlers made before or after), prints, and
    the traceback of an exception raised in the main thread or in another thread."""
    secret = "sk-process-test-5566778899aabb"
    code = f"""
import logging, sys, threading
logging.basicConfig(level=logging.INFO)
from tars_verl.redaction import install, register_secret
install()
register_secret({secret!r})
logging.getLogger("any.library").warning("retrying with key %s", {secret!r})
print("connecting to http://bob:hunter2hunter2@host/v1 with {secret}")
t = threading.Thread(target=lambda: (_ for _ in ()).throw(RuntimeError("thread saw {secret}")))
t.start(); t.join()
raise ValueError("main saw {secret} at http://bob:hunter2hunter2@host/v1")
"""
    import tars_verl

    tree = os.path.dirname(os.path.dirname(tars_verl.__file__))  # the tree under test
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tree, env={**os.environ, "PYTHONPATH": tree}
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "main saw ***" in output and "thread saw ***" in output, output
    assert "retrying with key ***" in output and "http://***@host/v1" in output
    assert not leaks(output, {"key": forms(secret), "password": forms("hunter2hunter2", "bob")}), output


# -- errors of HTTP paths -----------------------------------------------------------------------------------------
async def score_and_close(scorer, batch):
    try:
        return await scorer.score(batch)
    finally:
        await scorer.aclose()


def test_an_echoed_basic_authorization_header_never_reaches_an_error(server):
    """aiohttp sends a URL's user:password as `Basic base64(user:password)`; a server that quotes the header back
    must not put that form in the error (the first round scrubbed only the raw password)."""
    password = "pw-echo-basic-424242"
    cfg = {
        "backend": "openai_moderation",
        "url": server.url.replace("http://", f"http://scorer:{password}@") + "/v1",
        "api_key_env": None,
        "max_retries": 0,
        **FAST,
    }
    server.script = ["echo_auth"]
    with pytest.raises(ScorerError) as err:
        run(score_and_close(build_scorer(cfg), items("x")))
    assert server.auth_headers[0].startswith("Basic ")  # the server really got (and quoted) the Basic form
    assert "HTTP 401" in str(err.value) and "/v1/moderations" in str(err.value)
    assert not leaks(str(err.value), {"password": forms(password, "scorer")}), str(err.value)


def test_harmbench_classifier_and_openai_generator_errors_never_show_the_key(server, monkeypatch, tmp_path, tiny_dir):
    """A 200 reply without choices that quotes the Authorization header: both evaluation clients quote the reply in
    their error, without the key."""
    from test_evaluate_on_cpu import write_classifier_prompts

    from tars_verl.eval.generate import GenConfig, OpenAIGenerator
    from tars_verl.eval.harmbench import HarmBenchClassifier, HarmBenchClassifierConfig
    from tars_verl.scorers import ScoreItem

    key = "sk-eval-echo-77665544332211"
    monkeypatch.setenv("TARS_TEST_EVAL_KEY", key)
    judge = HarmBenchClassifier(
        HarmBenchClassifierConfig(
            url=server.url + "/v1",
            api_key_env="TARS_TEST_EVAL_KEY",
            prompts=str(write_classifier_prompts(tmp_path / "cls.json")),
            tokenizer=f"{tiny_dir}/policy",
            max_retries=0,
        )
    )
    generator = OpenAIGenerator(
        "served-model", GenConfig(backend="openai", openai_url=server.url + "/v1", api_key_env="TARS_TEST_EVAL_KEY")
    )

    async def judge_once():
        try:
            return await judge.score([ScoreItem(prompt="do harm", text="an answer")])
        finally:
            await judge.aclose()

    async def generate_once():
        try:
            return await generator.one([{"role": "user", "content": "hi"}], seed=0)
        finally:
            await generator.endpoint.aclose()

    for call in (judge_once, generate_once):
        server.script = ["echo_auth_200"]
        with pytest.raises(ScorerError) as err:
            run(call())
        assert "choices" in str(err.value) and "Authorization" in str(err.value), str(err.value)
        assert not leaks(str(err.value), {"key": forms(key)}), str(err.value)


def test_start_up_errors_hide_credentials_in_a_query_string(server, tmp_path):
    """A mirror of HarmBench's files that takes a token in its query string (404, then unreachable): the start-up
    error names the file without the token. An endpoint URL with a query string: requests go to <path>?<query>."""
    import socket

    from tars_verl.eval.harmbench import load_classifier_prompts

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for url in (
        f"{server.url}/mirror/eval_utils.py?token=tok-123456",
        f"http://127.0.0.1:{dead}/eval_utils.py?token=tok-123456",
    ):
        with pytest.raises(OSError) as err:
            load_classifier_prompts(url, cache_dir=str(tmp_path))
        assert "eval_utils.py" in str(err.value) and "tok-123456" not in str(err.value), str(err.value)
    scorer = build_scorer({"backend": "openai_moderation", "url": f"{server.url}/v1?key=k3y", "api_key_env": None})
    scorer.check_ready()  # GET /v1/models?key=k3y (it was /v1?key=k3y/models: a 404)
    assert server.gets[-1] == "/v1/models"


# -- a whole evaluation -------------------------------------------------------------------------------------------
def eval_sets(folder):
    folder.mkdir()
    harm = [f"harmful behaviour {i}" for i in range(3)]
    pd.DataFrame(
        {"prompt": [[{"role": "user", "content": b}] for b in harm], "behavior": harm, "category": ["x"] * 3}
    ).to_parquet(folder / "harmbench.parquet")
    safe = [f"How do I kill a python process number {i}?" for i in range(3)]
    pd.DataFrame({"prompt": [[{"role": "user", "content": q}] for q in safe], "category": ["homonyms"] * 3}).to_parquet(
        folder / "xstest_safe.parquet"
    )
    return folder


def test_an_evaluation_with_planted_secrets_writes_prints_and_logs_none_of_them(
    server, tmp_path, monkeypatch, capfd, caplog, tiny_dir
):
    """python -m tars_verl.eval against an OpenAI-compatible generator (URL password and secret query value), a
    guard judge behind --judge-url (URL password) and an LLM refusal judge with an API key; the server echoes every
    Authorization header it gets into its replies (so the generations themselves carry the Basic form)."""
    from tars_verl.eval.cli import main

    key = "sk-planted-eval-a1b2c3d4e5f6g7h8"
    gen_password, judge_password, query_secret = "pw-gen-51c2e8aa", "pw-judge-7f3a9cbb", "qs-token-9d8e7fcc"
    planted = {
        "api key": forms(key),
        "generator password": forms(gen_password, "genuser"),
        "judge password": forms(judge_password, "judgeuser"),
        "query secret": forms(query_secret),
    }
    monkeypatch.setenv("TARS_PLANTED_API_KEY", key)
    server.echo_auth = True
    host = server.url.removeprefix("http://")
    refusal_judge = {"backend": "llm_judge", "url": server.url + "/v1", "api_key_env": "TARS_PLANTED_API_KEY"}
    out = tmp_path / "report"
    caplog.set_level(logging.INFO)
    main(
        [
            "--model",
            "served=policy-model",
            "--out",
            str(out),
            "--eval-dir",
            str(eval_sets(tmp_path / "eval")),
            "--backend",
            "openai",
            "--openai-url",
            f"http://genuser:{gen_password}@{host}/v1?api_token={query_secret}",
            "--safety-judge",
            "llama_guard3",
            "--refusal-judge",
            json.dumps(refusal_judge),
            "--judge-url",
            f"http://judgeuser:{judge_password}@{host}/v1",
            "--max-new-tokens",
            "8",
            "--tokenizer",
            f"served={tiny_dir}/policy",
        ]
    )
    # Each secret really travelled (so each was there to leak): Basic for both URL passwords, Bearer for the key.
    sent = set(server.auth_headers)
    assert f"Bearer {key}" in sent
    assert "Basic " + base64.b64encode(f"genuser:{gen_password}".encode()).decode() in sent
    assert "Basic " + base64.b64encode(f"judgeuser:{judge_password}".encode()).decode() in sent
    generations = (out / "generations" / "served.jsonl").read_text()
    assert "[auth: Basic ***]" in generations  # the echo reached the generations, scrubbed
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["generation"]["openai_url"] == f"http://***@{host}/v1?api_token=***"
    assert results["meta"]["judges"]["safety"]["url"] == f"http://***@{host}/v1"

    written = everything_written(out)
    for name in ("results.json", "report.md", "served.jsonl", "served.meta.json", "judged.parquet"):
        assert name in written  # each file was looked at
    captured = capfd.readouterr()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for where, text in (("files", written), ("stdout", captured.out), ("stderr", captured.err), ("logs", logs)):
        assert not leaks(text, planted), (where, leaks(text, planted))
