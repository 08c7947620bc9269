"""The peer of benchmarks/bench_peer_reward.py: what a verl user writes from verl's docs to score with a served guard.

verl's ``naive`` reward manager calls this ``compute_score`` once per sample (``reward.custom_reward_function.path``
= this file, ``name`` = ``compute_score``, the settings below as ``reward_kwargs``). It posts the sample to the guard's
``/v1/chat/completions`` (one request per sample, one pooled aiohttp session per event loop, at most
``concurrency`` requests in flight) and reads the verdict with the project's own parsing (``parse_guard_reply``,
and with ``logprobs`` the graded score of ``graded_verdict``), so that both sides give the same verdicts.

The prompt comes from the data row (``extra_info["question"]``, as verl users store it), the answer is the text after
the last ``</think>``, stripped, as the TARS manager judges it.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tars_verl.scorers.guard_chat import FORMATS, _token_stream, graded_verdict, parse_guard_reply

# One session and semaphore per event loop (a session cannot cross loops); close_sessions() closes them.
_SESSIONS: dict[int, tuple[aiohttp.ClientSession, asyncio.Semaphore]] = {}


def _session(concurrency: int) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
    loop = asyncio.get_running_loop()
    entry = _SESSIONS.get(id(loop))
    if entry is None or entry[0].closed:
        connector = aiohttp.TCPConnector(limit=concurrency)
        entry = (aiohttp.ClientSession(connector=connector), asyncio.Semaphore(concurrency))
        _SESSIONS[id(loop)] = entry
    return entry


async def compute_score(
    data_source,
    solution_str,
    ground_truth,
    extra_info=None,
    url="http://127.0.0.1:8001/v1",
    model="guard",
    logprobs=False,
    top_logprobs=10,
    max_tokens=32,
    concurrency=64,
    **kwargs,
):
    answer = solution_str.rpartition("</think>")[2].strip()
    payload = {
        "model": model,
        "messages": [
            {"role": "user", "content": extra_info["question"]},
            {"role": "assistant", "content": answer},
        ],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    if logprobs:
        payload.update(logprobs=True, top_logprobs=top_logprobs)
    session, sem = _session(concurrency)
    async with sem:
        async with session.post(f"{url}/chat/completions", json=payload) as resp:
            resp.raise_for_status()
            body = await resp.json()
    choice = body["choices"][0]
    score, details = parse_guard_reply(choice["message"]["content"], "llama_guard")
    if logprobs:
        graded = graded_verdict(_token_stream(choice), FORMATS["llama_guard"])
        if graded is not None:
            score = graded
    return {"score": score, "unsafe": float(details["verdict"] == "unsafe")}


async def close_sessions() -> None:
    """Close this event loop's session (the benchmark calls it at the end: no unclosed session at exit)."""
    entry = _SESSIONS.pop(id(asyncio.get_running_loop()), None)
    if entry is not None:
        await entry[0].close()
