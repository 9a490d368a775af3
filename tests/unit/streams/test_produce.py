"""``produce_replay`` against a recording producer: what it asks Kafka for, and in what order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from broker.replay import load_messages
from broker.streams.produce import produce_replay

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"


class RecordingProducer:
    """A kafka-python producer's calls, in order (``partitions_for`` blocks on metadata)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def partitions_for(self, topic: str) -> set[int]:
        self.calls.append(("metadata", topic))
        return {0}

    def send(self, topic: str, **_: Any) -> None:
        self.calls.append(("send", topic))

    def flush(self) -> None:
        self.calls.append(("flush", ""))


def test_every_topics_metadata_comes_before_the_first_send() -> None:
    """A first send to a topic waits for its metadata; mid-stream, at max speed, that wait
    would look to a live worker like its feed going quiet, so it is taken up front."""
    messages = load_messages(FIXTURES / "incidents" / "route-downtown")
    assert {t for t, _ in messages} == {"avl.positions", "cad.routes"}
    assert messages[0][0] == "avl.positions"  # the route comes mid-stream
    producer = RecordingProducer()

    sent = produce_replay(messages, "127.0.0.1:9", max_speed=True, speed=None,
                          topic_prefix="p.", partitions=None, producer=producer)  # type: ignore[arg-type]

    first_send = next(i for i, (what, _) in enumerate(producer.calls) if what == "send")
    assert sorted(producer.calls[:first_send]) == [
        ("metadata", "p.avl.positions"), ("metadata", "p.cad.routes")
    ]
    assert [c for c in producer.calls if c[0] == "metadata"] == producer.calls[:first_send]
    assert sent.sent == len(messages) == sum(1 for what, _ in producer.calls if what == "send")
