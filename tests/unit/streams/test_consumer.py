"""The worker's Kafka transport (broker.streams.consumer): the fetcher's hand-off of a record (in
place when it need not wait, Faust's race with the flow when it must, the callback's result and
errors either way), and its waits for records (a poll, a fetch at the broker)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mode.services import WaitResults

from broker.streams.consumer import (
    METADATA_RETRY_FIRST_S,
    METADATA_RETRY_MAX_S,
    POLL_WAIT_S,
    HandoffConsumer,
    KafkaTransport,
    hand_off,
    pace_metadata_retries,
)


class Race:
    """Faust's ``wait_first`` in small: the first of the awaitables to finish wins."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, *coros: Any) -> WaitResults:
        self.calls += 1
        tasks = {asyncio.ensure_future(c): c for c in coros}
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        winners = [tasks[t] for t in done]
        return WaitResults(winners, [t.result() for t in done], False)


def test_a_callback_that_never_waits_is_run_in_place_without_the_race() -> None:
    race, flow = Race(), asyncio.Event()
    seen: list[str] = []

    async def callback() -> str:
        seen.append("ran")
        return "put"

    async def main() -> WaitResults:
        waiting = flow.wait()
        result = await hand_off(callback(), waiting, race)
        assert waiting.cr_frame is None  # closed, not left for the garbage collector to warn of
        return result

    result = asyncio.run(main())
    assert (race.calls, seen, result.results, result.stopped) == (0, ["ran"], ["put"], False)


def test_a_callback_that_waits_finishes_through_the_race_with_its_result() -> None:
    race = Race()

    async def main() -> tuple[WaitResults, list[int]]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(1)  # full: the next put waits until a get makes room
        flow = asyncio.Event()

        async def callback() -> str:
            await queue.put(2)
            return "put after waiting"

        async def consumer() -> list[int]:
            await asyncio.sleep(0.01)
            return [queue.get_nowait(), await queue.get()]

        got = asyncio.ensure_future(consumer())
        result = await hand_off(callback(), flow.wait(), race)
        return result, await got

    result, got = asyncio.run(main())
    assert race.calls == 1
    assert result.results == ["put after waiting"]
    assert got == [1, 2]  # the record got through, after the one ahead of it


def test_a_waiting_callback_loses_to_a_flow_suspended_meanwhile_as_in_faust() -> None:
    race = Race()

    async def main() -> tuple[WaitResults, bool]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(1)
        flow = asyncio.Event()
        finished = False

        async def callback() -> None:
            nonlocal finished
            await queue.put(2)
            finished = True

        asyncio.get_running_loop().call_later(0.01, flow.set)  # a rebalance suspends the flow
        result = await hand_off(callback(), flow.wait(), race)
        return result, finished

    result, finished = asyncio.run(main())
    assert result.results == [True]  # the flow's wait won; the hand-off was abandoned
    assert not finished


@pytest.mark.parametrize("waits", [False, True])
def test_a_callback_error_reaches_the_fetcher(waits: bool) -> None:
    async def main() -> None:
        async def callback() -> None:
            if waits:
                await asyncio.sleep(0)
            raise ValueError("undecodable key")

        await hand_off(callback(), asyncio.Event().wait(), Race())

    with pytest.raises(ValueError, match="undecodable key"):
        asyncio.run(main())


def test_a_poll_for_records_waits_at_most_poll_wait_s() -> None:
    """Faust asks the consumer thread for records with a second's timeout; a partition it puts
    back meanwhile would wait that second although its records are fetched already."""
    asked: list[float] = []

    class Thread:
        async def getmany(self, active: Any, timeout: float) -> dict[Any, Any]:  # noqa: ASYNC109  # Faust's
            asked.append(timeout)
            return {}

    consumer = object.__new__(HandoffConsumer)  # only the poll: no app, no thread started
    consumer._thread = Thread()  # type: ignore[assignment]
    assert asyncio.run(consumer._getmany(None, 1.0)) == {}
    asyncio.run(consumer._getmany(None, POLL_WAIT_S / 2))
    assert asked == [POLL_WAIT_S, POLL_WAIT_S / 2]
    assert POLL_WAIT_S < 1.0


@pytest.mark.parametrize("wait_ms", [None, 100, 0])
def test_the_worker_consumer_fetches_with_the_transports_max_wait(wait_ms: int | None) -> None:
    """The aiokafka consumer the thread builds (not started: nothing connects) long-polls the
    broker for the transport's ``fetch_max_wait_ms``; None keeps Faust's 1,500."""
    import faust

    async def build() -> Any:
        app = faust.App("unit-fetch-wait", broker="kafka://127.0.0.1:9", autodiscover=False)
        app.transport = KafkaTransport(app.conf.broker_consumer, app)
        app.transport.fetch_max_wait_ms = wait_ms
        consumer = app.consumer
        assert isinstance(consumer, HandoffConsumer)
        return consumer._thread._create_worker_consumer(app.transport)

    aiokafka_consumer = asyncio.run(build())
    assert aiokafka_consumer._fetch_max_wait_ms == (1500 if wait_ms is None else wait_ms)


class FlakyClient:
    """An aiokafka client's metadata update in small: fails (Kafka away) until told."""

    def __init__(self) -> None:
        self.up = False
        self.asked = 0

    async def _metadata_update(self, cluster: Any, topics: Any) -> bool:
        self.asked += 1
        return self.up


def test_failed_metadata_updates_wait_longer_each_time_up_to_the_cap_and_reset() -> None:
    client, waits = FlakyClient(), []

    async def sleep(s: float) -> None:
        waits.append(s)

    pace_metadata_retries(client, sleep=sleep)

    async def updates(n: int) -> list[bool]:
        return [await client._metadata_update(None, None) for _ in range(n)]

    assert asyncio.run(updates(5)) == [False] * 5
    assert waits == [METADATA_RETRY_FIRST_S, 0.1, 0.2, METADATA_RETRY_MAX_S, METADATA_RETRY_MAX_S]
    client.up = True
    assert asyncio.run(updates(1)) == [True]
    assert len(waits) == 5  # a success does not wait
    client.up = False
    asyncio.run(updates(1))
    assert waits[-1] == METADATA_RETRY_FIRST_S  # and starts the next outage from the first wait
    assert client.asked == 7


def test_the_worker_consumer_and_producer_pace_their_metadata_retries() -> None:
    """Both aiokafka clients the worker builds (not started: nothing connects) wait after a
    failed metadata update instead of spinning while Kafka is away."""
    import faust

    async def build() -> tuple[Any, Any]:
        app = faust.App("unit-paced", broker="kafka://127.0.0.1:9", autodiscover=False)
        app.transport = KafkaTransport(app.conf.broker_consumer, app)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        producer = app.producer._new_producer()
        return consumer._client, producer.client

    for client in asyncio.run(build()):
        assert client._metadata_update.__qualname__.startswith("pace_metadata_retries")


@pytest.mark.parametrize("backoff_ms", [None, 10])
def test_the_worker_fetcher_waits_behind_untaken_records_the_transports_backoff(
    backoff_ms: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After Faust's start, the fetcher holds back fetches behind records not yet taken for the
    transport's ``prefetch_backoff_ms``; None keeps aiokafka's 0.1 s."""
    from types import SimpleNamespace

    from faust.transport.drivers import aiokafka as faust_aiokafka

    from broker.streams.consumer import FetchThread

    async def started(self: Any) -> None:  # Faust's start in small: the consumer and its fetcher
        self._consumer = SimpleNamespace(_fetcher=SimpleNamespace(_prefetch_backoff=0.1))

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "on_start", started)
    thread = object.__new__(FetchThread)
    thread.transport = SimpleNamespace(prefetch_backoff_ms=backoff_ms)  # type: ignore[assignment]
    asyncio.run(thread.on_start())
    assert thread._consumer._fetcher._prefetch_backoff == (
        0.1 if backoff_ms is None else backoff_ms / 1000
    )


def test_aiokafka_still_reads_the_fetcher_backoff_where_the_worker_sets_it() -> None:
    """The setting above is an attribute aiokafka reads for each partition's fetched records;
    an aiokafka that read it elsewhere would ignore the worker's value silently."""
    import inspect

    from aiokafka.consumer.fetcher import Fetcher

    assert "backoff=self._prefetch_backoff" in inspect.getsource(Fetcher)
