import asyncio

import pytest

from ingest_api.hot_path import IndexedHeaders
from ingest_api.publisher import all_done


def test_indexed_headers_answer_like_starlettes() -> None:
    headers = IndexedHeaders(
        {
            "type": "http",
            "headers": [
                (b"content-type", b"text/plain"),
                (b"x-forwarded-for", b"10.0.0.1"),
                (b"x-forwarded-for", b"10.0.0.2"),
            ],
        }
    )
    assert headers.get("Content-Type") == "text/plain"
    assert headers["x-forwarded-for"] == "10.0.0.1"  # the first value, as Headers
    assert "ORIGIN" not in headers and "content-type" in headers and 1 not in headers
    assert headers.get("origin") is None and headers.get("origin", "-") == "-"
    assert headers.getlist("x-forwarded-for") == ["10.0.0.1", "10.0.0.2"]
    with pytest.raises(KeyError):
        headers["authorization"]


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
