"""A bug fanning out one ``alerts`` record (broker.streams.fanout_agent ``failed``): the record
is parked in ``delivery.dlq`` and acked, or the worker stops. A park that Kafka does not take
(Faust's ProducerSendError of a KafkaError) must stop it too: raised out of ``run``, Faust's
supervisor restarted the agent, the record stayed unacked in ``acks`` and the partition's commit
was frozen behind it, with nothing stopping."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.exceptions import ProducerSendError

from broker.failure import FailurePolicy, StopWork
from broker.streams.fanout_agent import FanOutAgent
from broker.streams.runtime import WORKER_OUTAGES


class Sent:
    """What Topic.send returns: a future of Kafka's answer."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def __await__(self) -> Any:
        if self.error is not None:
            raise self.error
        return None
        yield  # a generator: awaitable


def not_taken() -> ProducerSendError:
    """The error Faust raises for a send its producer could not make (Kafka away)."""
    try:
        try:
            raise KafkaTimeoutError()
        except KafkaTimeoutError as exc:
            raise ProducerSendError(f"Error while sending: {exc!r}") from exc
    except ProducerSendError as err:
        return err


def agent(error: BaseException | None, stops: list[StopWork]) -> FanOutAgent:
    """A fan-out agent with only what ``failed`` uses; the DLQ's send answers ``error``."""
    async def send(**kw: Any) -> Sent:
        return Sent(error)

    async def stop(s: StopWork) -> None:
        stops.append(s)

    a = object.__new__(FanOutAgent)
    a.failures = FailurePolicy(outages=WORKER_OUTAGES)
    a.alerts_topic = "alerts"
    a.topics = SimpleNamespace(delivery_dlq=SimpleNamespace(send=send))  # type: ignore[assignment]
    a.stop = stop  # type: ignore[method-assign]
    return a


@pytest.mark.parametrize("error", [not_taken(), RuntimeError("a bug in the DLQ's send")])
async def test_a_bug_whose_dead_letter_kafka_does_not_take_stops_the_worker(
    error: BaseException,
) -> None:
    stops: list[StopWork] = []
    acked: list[bool] = []
    event = SimpleNamespace(key=b"CFD-E7:F1:approaching", value=b"{not an alert")
    goes_on = await agent(error, stops).failed(
        event, ValueError("a bug decoding it"), lambda: acked.append(True))  # type: ignore[arg-type]
    assert goes_on is False and acked == []  # never acked: the restarted worker reads it again
    assert len(stops) == 1 and stops[0].failure.site == "settle"


async def test_a_bug_parked_in_the_dlq_is_acked_and_the_stream_goes_on() -> None:
    stops: list[StopWork] = []
    acked: list[bool] = []
    event = SimpleNamespace(key=b"CFD-E7:F1:approaching", value=b"{not an alert")
    goes_on = await agent(None, stops).failed(
        event, ValueError("a bug decoding it"), lambda: acked.append(True))  # type: ignore[arg-type]
    assert goes_on is True and acked == [True] and stops == []
