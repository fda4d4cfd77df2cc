import asyncio

import pytest

from ingest_api.publisher import all_done


async def test_all_done_waits_for_every_future_and_never_cancels_them() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[object]] = [loop.create_future() for _ in range(3)]
    futures[0].set_result(1)
    waiting = asyncio.create_task(all_done(futures))
    loop.call_soon(futures[1].set_result, 2)
    loop.call_soon(futures[2].set_exception, ValueError("nack"))
    await asyncio.wait_for(waiting, 1)
    assert isinstance(futures[2].exception(), ValueError)

    pending: list[asyncio.Future[object]] = [loop.create_future()]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(all_done(pending), 0.01)
    assert not pending[0].cancelled()  # a deadline leaves the producer's future alone
    await all_done([])


def test_cached_partitioner_matches_kafkas_default() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from ingest_api.publisher import partition_for

    partitions = list(range(6))
    for key in (b"u-1", b"anonymous-2", "ü".encode(), b""):
        assert partition_for(key, partitions, partitions) == DefaultPartitioner()(
            key, partitions, partitions
        )
