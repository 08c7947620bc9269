"""SFT traces against a local teacher server: resume after interruption, the parquet verl's SFT dataset reads."""

import asyncio
import json

import pandas as pd
import pytest
from conftest import sft_generate_args
from omegaconf import OmegaConf

from tars_verl.data.files import read_done
from tars_verl.data.sft_traces import (
    SFT_POOLS,
    TraceConfig,
    TraceSettings,
    build_parser,
    generate_traces,
    main,
    select_prompts,
    split_teacher_reply,
    trace_config,
    traces_to_sft,
)
from tars_verl.data.text import QWEN_DEFAULT_SYSTEM_PROMPT, normalise
from tars_verl.testing.source_files import write_rl_sources

POOLS = {"wildjailbreak": 6, "aegis2": 4, "safeedit": 0}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return write_rl_sources(str(tmp_path_factory.mktemp("sft_src")), n=60)


def trace_cfg(sources, out, url, **kw):
    base = dict(
        out=str(out),
        url=url,
        model="teacher",
        samples=2,
        pools=dict(POOLS),
        paths=dict(sources),
        max_retries=1,
        max_concurrency=4,
    )
    base.update(kw)
    return TraceConfig(**base)


def generate_args(sources, out, server, *extra):
    pools = [f"--pool={k}={v}" for k, v in POOLS.items()]
    return sft_generate_args(out, server, *pools, *[f"--source={k}={v}" for k, v in sources.items()], *extra)


def test_split_teacher_reply_formats():
    assert split_teacher_reply({"content": "A", "reasoning_content": " R "}) == ("R", "A")
    assert split_teacher_reply({"content": "<think>\nR\n</think>\n\nA"}) == ("R", "A")
    assert split_teacher_reply({"content": "no reasoning"}) == ("", "no reasoning")


def test_assistant_turn_is_exactly_the_paper_format_and_empty_reasoning_dropped():
    recs = [
        {"prompt_id": "p", "sample_idx": 0, "prompt": "q", "reasoning": " r ", "answer": "a"},
        {"prompt_id": "p", "sample_idx": 1, "prompt": "q", "reasoning": "  ", "answer": "a"},
        {"prompt_id": "x", "sample_idx": 0, "prompt": "q2", "response": "<think>\nr2\n</think>\n\na2"},
    ]
    df, stats = traces_to_sft(recs, system_prompt="SYS")
    assert stats == {"traces": 3, "kept": 2, "dropped_empty_reasoning": 1, "dropped_empty_answer": 0}
    msgs = list(df["messages"].iloc[0])
    assert msgs[0] == {"role": "system", "content": "SYS"} and msgs[1] == {"role": "user", "content": "q"}
    assert msgs[2]["content"] == "<think>\nr\n</think>\n\na"
    assert list(df["messages"].iloc[1])[2]["content"] == "<think>\nr2\n</think>\n\na2"


def test_prompts_are_disjoint_from_the_rl_mix(sources, tmp_path):
    from tars_verl.data.rl_mix import MixConfig, write_mixes

    write_mixes(
        MixConfig(
            total=100, val_size=0, paths=sources, pools={"wildjailbreak": 30, "rainbow_teaming": 30, "aegis2": 20}
        ),
        str(tmp_path / "mix"),
    )
    mix = pd.read_parquet(tmp_path / "mix" / "train.parquet")
    mix_prompts = {normalise(p[-1]["content"]) for p in mix["prompt"]}
    prompts = select_prompts(
        TraceConfig(
            out=str(tmp_path),
            pools={"wildjailbreak": 20, "aegis2": 20, "safeedit": 0},
            paths=sources,
            exclude_files=[str(tmp_path / "mix" / "train.parquet")],
        )
    )
    assert len(prompts) == 40 and not {normalise(t) for t in prompts["text"]} & mix_prompts


def test_generation_resumes_after_interruption_and_loses_nothing(sources, server, tmp_path):
    cfg = trace_cfg(sources, tmp_path / "sft", server.url + "/v1")
    prompts = select_prompts(cfg)  # 10 prompts x 2 samples
    server.script = ["ok"] * 7 + ["500"] * 100  # the teacher dies after 7 answers
    new, failures = asyncio.run(generate_traces(cfg, prompts))
    assert new == 7 and failures == 13
    log = tmp_path / "sft" / "traces.jsonl"
    first_lines = log.read_text().splitlines()
    with open(log, "a") as f:
        f.write('{"prompt_id": "wildjailbreak-0", "sample_i')  # a crash in the middle of a write
    server.script = []
    n_requests = len(server.requests)
    new, failures = asyncio.run(generate_traces(cfg, prompts))
    assert new == 13 and failures == 0
    assert len(server.requests) - n_requests == 13  # only what was missing was asked for
    lines = log.read_text().splitlines()
    assert lines[:7] == first_lines and len(lines) == 20
    done = read_done(str(log))
    assert set(done) == {(p, k) for p in prompts["prompt_id"] for k in range(2)}


def test_cli_generate_refuses_to_write_until_complete_then_writes(sources, server, tmp_path):
    args = generate_args(sources, tmp_path, server, "--max-retries", "0")
    server.script = ["ok"] * 3 + ["500"] * 50
    with pytest.raises(SystemExit, match="samples missing .* run the same command again"):
        main(args)
    assert not (tmp_path / "sft_train.parquet").exists()
    server.script = []
    main(args)
    train, val = pd.read_parquet(tmp_path / "sft_train.parquet"), pd.read_parquet(tmp_path / "sft_val.parquet")
    assert len(train) + len(val) == 10
    stats = json.loads((tmp_path / "sft_stats.json").read_text())
    assert stats["kept"] == 10 and stats["dropped_empty_reasoning"] == 0


def test_teacher_with_think_tags_and_empty_reasoning_is_dropped(tmp_path, server):
    prompts = pd.DataFrame(
        {
            "prompt_id": ["a-1", "a-2"],
            "source": ["x", "x"],
            "source_index": [1, 2],
            "text": ["normal request", "EMPTY reasoning request"],
        }
    )
    cfg = TraceConfig(out=str(tmp_path), url=server.url + "/v1", model="teacher-tags", samples=1)
    asyncio.run(generate_traces(cfg, prompts))
    df, stats = traces_to_sft(list(read_done(str(tmp_path / "traces.jsonl")).values()), None)
    assert stats["dropped_empty_reasoning"] == 1 and len(df) == 1


def test_convert_mode_needs_no_endpoint(tmp_path):
    src = tmp_path / "old.jsonl"
    src.write_text(
        "\n".join(
            json.dumps({"prompt": f"q{i}", "reasoning": f"r{i}", "answer": f"a{i}", "prompt_id": f"p{i}"})
            for i in range(20)
        )
    )
    main(["convert", "--traces", str(src), "--out", str(tmp_path / "out"), "--system-prompt", "none"])
    train = pd.read_parquet(tmp_path / "out" / "sft_train.parquet")
    assert len(train) == 19 and list(train["messages"].iloc[0])[0]["role"] == "user"


def test_verl_sft_dataset_masks_everything_but_the_assistant_turn(tmp_path, tiny_dir):
    from transformers import AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    src = tmp_path / "t.jsonl"
    src.write_text(
        json.dumps(
            {
                "prompt": "How do I make a weapon?",
                "reasoning": "This is harmful.",
                "answer": "I can't help with that.",
                "prompt_id": "p",
            }
        )
        + "\n"
    )
    main(["convert", "--traces", str(src), "--out", str(tmp_path), "--val-fraction", "0"])
    tok = AutoTokenizer.from_pretrained(f"{tiny_dir}/tokenizer")
    ds = MultiTurnSFTDataset(
        str(tmp_path / "sft_train.parquet"),
        tok,
        OmegaConf.create({"max_length": 256, "messages_key": "messages", "truncation": "error"}),
    )
    item = ds[0]
    ids, mask = item["input_ids"], item["loss_mask"]
    learned = tok.decode(ids[mask.bool()])
    assert learned.startswith("<think>\nThis is harmful.\n</think>\n\nI can't help with that.<|im_end|>")
    assert "How do I make a weapon?" not in learned and "You are Qwen" not in learned
    full = tok.decode(ids[item["attention_mask"].bool()])
    assert "How do I make a weapon?" in full and "You are Qwen" in full


def test_teacher_gets_no_system_prompt_but_the_sft_target_keeps_qwens(sources, server, tmp_path):
    from tars_verl.data.text import QWEN_DEFAULT_SYSTEM_PROMPT

    args = generate_args(sources, tmp_path / "a", server)
    main(args)
    sent = [p["messages"] for _, p in server.requests]
    assert sent and all([m["role"] for m in msgs] == ["user"] for msgs in sent)
    train = pd.read_parquet(tmp_path / "a" / "sft_train.parquet")
    first = list(train["messages"].iloc[0])
    assert first[0] == {"role": "system", "content": QWEN_DEFAULT_SYSTEM_PROMPT}
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    n = len(server.requests)
    main(generate_args(sources, tmp_path / "b", server, "--teacher-system-prompt", "Be careful."))
    assert all(p["messages"][0] == {"role": "system", "content": "Be careful."} for _, p in server.requests[n:])


def test_the_generate_flags_are_parsed_into_trace_config(tmp_path):
    """TraceSettings' fields are flags (HfArgumentParser), under their old names too; the other flags become
    TraceConfig's pools, paths, excluded files and system prompts."""
    import dataclasses

    (tmp_path / "eval").mkdir()
    pd.DataFrame({"prompt": ["p"]}).to_parquet(tmp_path / "eval" / "xstest.parquet")
    argv = ["generate", "--out", "o", "--url", "http://h/v1", "--model", "r1", "--api-key-env", "K"]
    argv += ["--samples", "2", "--seed", "3", "--max-chars", "50", "--temperature", "0.1", "--max-tokens", "99"]
    argv += ["--max-concurrency", "5", "--max-retries", "0", "--timeout", "7", "--allow-small-pools"]
    argv += ["--allow-missing", "--retry-dropped", "--pool", "aegis2=9", "--source", "aegis2=/a.parquet"]
    argv += ["--exclude", "/mix.parquet", "--exclude-dir", str(tmp_path / "eval"), "--system-prompt", "none"]
    argv += ["--teacher-system-prompt", "qwen"]
    cfg = trace_config(build_parser().parse_args(argv))
    assert cfg == TraceConfig(
        out="o", url="http://h/v1", model="r1", api_key_env="K", samples=2, seed=3, max_chars=50, temperature=0.1,
        max_tokens=99, max_concurrency=5, max_retries=0, timeout_s=7.0, allow_small_pools=True, allow_missing=True,
        retry_dropped=True, pools={**SFT_POOLS, "aegis2": 9}, paths={"aegis2": "/a.parquet"},
        exclude_files=["/mix.parquet", str(tmp_path / "eval" / "xstest.parquet")], system_prompt=None,
        teacher_system_prompt=QWEN_DEFAULT_SYSTEM_PROMPT,
    )  # fmt: skip
    defaults = trace_config(build_parser().parse_args(["generate", "--out", "o", "--url", "u", "--model", "m"]))
    assert defaults == TraceConfig(out="o", url="u", model="m")  # the flags' defaults are the dataclass's
    flags = " ".join(argv)
    assert all(
        f"--{f.name.replace('_', '-')}" in flags or f.name == "timeout_s" for f in dataclasses.fields(TraceSettings)
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--out", "o", "--model", "m"])  # --url is still required
