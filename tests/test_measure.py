"""pets.measure(): each block counts its own context's traffic, never a concurrent block's."""

from __future__ import annotations

import asyncio
import threading

import pets
from pets.measure import record_bytes, record_received, record_round


def _traffic(sent: int, start: threading.Barrier, middle: threading.Barrier,
             results: dict[int, pets.Measurement]) -> None:
    start.wait()
    with pets.measure() as cost:
        middle.wait()  # both blocks are open now
        record_bytes(sent)
        record_received(2 * sent)
        record_round()
        middle.wait()  # both have recorded
    results[sent] = cost


def test_concurrent_measurements_in_threads_count_only_their_own_bytes() -> None:
    start, middle = threading.Barrier(2), threading.Barrier(2)
    results: dict[int, pets.Measurement] = {}
    threads = [threading.Thread(target=_traffic, args=(n, start, middle, results))
               for n in (10, 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sent, cost in results.items():
        assert (cost.bytes_sent, cost.bytes_received, cost.rounds) == (sent, 2 * sent, 1)


def test_concurrent_measurements_in_asyncio_tasks_count_only_their_own_bytes() -> None:
    async def request(sent: int, both_open: asyncio.Event, opened: list[int]) -> int:
        with pets.measure() as cost:
            opened.append(sent)
            if len(opened) == 2:
                both_open.set()
            await both_open.wait()
            record_bytes(sent)
        return cost.bytes_sent

    async def main() -> list[int]:
        both_open, opened = asyncio.Event(), []
        return list(await asyncio.gather(request(5, both_open, opened),
                                         request(7, both_open, opened)))

    assert asyncio.run(main()) == [5, 7]


def test_nested_blocks_add_to_the_outer_one() -> None:
    with pets.measure() as outer:
        record_bytes(3)
        with pets.measure() as inner:
            record_bytes(4)
    assert (outer.bytes_sent, inner.bytes_sent) == (7, 4)
