import asyncio

import pytest

from tars_verl.reward.batching import MicroBatcher


def test_concurrent_calls_are_coalesced_up_to_max_batch_size():
    seen = []

    async def fn(xs):
        seen.append(list(xs))
        await asyncio.sleep(0)
        return [x * 10 for x in xs]

    async def main():
        b = MicroBatcher(fn, max_batch_size=4, max_wait_ms=50)
        return await asyncio.gather(*(b.submit(i) for i in range(10))), b

    out, b = asyncio.run(main())
    assert out == [i * 10 for i in range(10)]
    assert sorted(len(s) for s in seen) == [2, 4, 4]
    assert [x for s in seen for x in s] == list(range(10))  # order kept inside and across batches


def test_partial_batch_goes_out_after_max_wait():
    async def fn(xs):
        return xs

    async def main():
        b = MicroBatcher(fn, max_batch_size=100, max_wait_ms=1)
        return await asyncio.wait_for(b.submit("x"), timeout=2)

    assert asyncio.run(main()) == "x"


def test_error_reaches_every_caller_of_the_batch():
    async def fn(xs):
        raise RuntimeError("scorer down")

    async def main():
        b = MicroBatcher(fn, max_batch_size=3, max_wait_ms=1)
        return await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)

    out = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) and "scorer down" in str(e) for e in out)


def test_wrong_result_count_is_an_error():
    async def fn(xs):
        return xs[:-1]

    async def main():
        b = MicroBatcher(fn, max_batch_size=2, max_wait_ms=1)
        await asyncio.gather(b.submit(1), b.submit(2))

    with pytest.raises(RuntimeError, match="2 items"):
        asyncio.run(main())


def test_a_batch_in_flight_when_its_loop_is_closed_raises_nothing_at_collection(monkeypatch):
    """A reward worker's loop closed (or the process ending) while a batch waits on its scorer: the batch's task is
    destroyed with GeneratorExit, and must not touch its callers' futures on the closed loop."""
    import gc
    import sys

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    async def never(xs):
        await asyncio.Event().wait()

    loop = asyncio.new_event_loop()

    async def main():
        b = MicroBatcher(never, max_batch_size=2, max_wait_ms=1)
        waiters = [asyncio.ensure_future(b.submit(i)) for i in range(2)]
        while not b._tasks:
            await asyncio.sleep(0.001)
        return waiters

    waiters = loop.run_until_complete(main())
    loop.close()
    del loop, waiters
    gc.collect()
    assert [(u.exc_type, str(u.exc_value)) for u in unraisable] == []


def test_aclose_cancels_parked_items_and_batches_in_flight():
    calls = []

    async def slow(xs):
        calls.append(list(xs))
        await asyncio.Event().wait()

    async def main():
        b = MicroBatcher(slow, max_batch_size=2, max_wait_ms=60_000)
        sent = [asyncio.ensure_future(b.submit(i)) for i in range(2)]  # a full batch: goes out at once
        parked = asyncio.ensure_future(b.submit(2))  # waits for a partner or 60 s
        while not calls:
            await asyncio.sleep(0.001)
        await b.aclose()
        results = await asyncio.gather(*sent, parked, return_exceptions=True)
        return results, b

    results, b = asyncio.run(main())
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert calls == [[0, 1]] and not b._tasks and not b._pending and b._timer is None
