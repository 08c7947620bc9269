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
