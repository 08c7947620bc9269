"""Every HTTP session a scorer or the reward manager opens is closed: by ``aclose``, and when nobody calls it (verl's
reward workers have no shutdown hook) when the endpoint is collected or the interpreter exits."""

import asyncio
import os
import subprocess
import sys

import pytest

from tars_verl.testing.verl_batch import Sample, make_reward_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A scorer used the ways callers use one, never closed by the caller.
SCRIPT = """
import asyncio, gc, sys
from tars_verl.scorers import ScoreItem, build_scorer
from tars_verl.testing.fake_servers import ScorerServer

with ScorerServer() as srv:
    scorer = build_scorer({"backend": "llm_judge", "url": srv.url + "/v1"})
    items = [ScoreItem("q", "a b c"), ScoreItem("q2", "d e")]
    mode = sys.argv[1]
    if mode == "verl_loop":  # verl's RewardLoopWorker: one loop for the worker's life, never closed
        loop = asyncio.new_event_loop()
        results = loop.run_until_complete(scorer.score(items))
    elif mode == "asyncio_run":  # the loop is closed before the session
        results = asyncio.run(scorer.score(items))
    elif mode == "dropped":  # the scorer is collected while the program goes on
        loop = asyncio.new_event_loop()
        results = loop.run_until_complete(scorer.score(items))
        del scorer
        gc.collect()
    elif mode == "dropped_in_another_loop":  # collected while another loop runs in this thread (a later asyncio.run)
        loop = asyncio.new_event_loop()
        results = loop.run_until_complete(scorer.score(items))

        async def drop():
            global scorer
            del scorer
            gc.collect()

        asyncio.run(drop())
    assert len(results) == 2, results
    print("scored", len(srv.requests))
"""


@pytest.mark.parametrize("mode", ["verl_loop", "asyncio_run", "dropped", "dropped_in_another_loop"])
def test_a_session_nobody_closed_is_closed_without_an_unclosed_session_report(mode, tmp_path):
    script = tmp_path / "use_scorer.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [sys.executable, str(script), mode], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "scored" in proc.stdout
    assert "Unclosed" not in proc.stderr, proc.stderr[-3000:]  # "Unclosed client session" / "Unclosed connector"
    assert "never awaited" not in proc.stderr, proc.stderr[-3000:]  # a close coroutine made and dropped


def test_the_managers_aclose_closes_its_sessions_and_stops_its_batchers(tiny_dir, server):
    from test_reward_manager_on_cpu import rules_and_judge, score, user, worker_for

    worker = worker_for(tiny_dir, *rules_and_judge(server))
    manager = worker.reward_manager
    score(worker, [Sample(user("a poem"), "<think>\nok\n</think>\n\none two", "harmless")])
    endpoint = manager.scorers["helpfulness"].endpoint
    sessions = [session for session, _ in endpoint._per_loop.values()]
    assert sessions and not any(s.closed for s in sessions)

    async def park_then_close():
        # An item parked in a batcher (its batch not yet sent) when the manager closes: cancelled, not lost silently.
        batcher = manager.batchers["helpfulness"]
        batcher.max_wait_s = 60.0
        parked = asyncio.ensure_future(
            manager.run_single(
                make_reward_batch(
                    worker.input_tokenizer, [Sample(user("a poem"), "<think>\nok\n</think>\n\nthree", "harmless")]
                )
            )
        )
        while not batcher._pending:
            await asyncio.sleep(0.01)
        await manager.aclose()
        return await asyncio.gather(parked, return_exceptions=True)

    (outcome,) = worker.loop.run_until_complete(park_then_close())
    assert isinstance(outcome, asyncio.CancelledError)
    assert all(s.closed for s in sessions) and not endpoint._per_loop
