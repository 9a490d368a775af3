"""The worker's shutdown of delivery (broker.streams.fanout_agent): each step runs even if the one
before it raised: the audit file is synced to disk, the audit producer gets the last records,
and the HTTP pool is closed. An error closing the agent is logged, not raised out of Faust's
shutdown hook (which would skip the producer's flush)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from adapters.audit import JsonlAudit, MemoryAudit, TeeAudit
from broker.streams.fanout_agent import FanOutAgent, close_delivery, has_file


class Steps:
    """Records which shutdown steps ran; ``fail`` names the one that raises (``also``: more);
    ``hang``, one that waits for ever once it has set ``hung`` (to be cancelled there)."""

    def __init__(self, fail: str = "", *also: str, hang: str = "") -> None:
        self.ran: list[str] = []
        self.fail = fail
        self.failing = {fail, *also}
        self.hang = hang
        self.hung = asyncio.Event()

    async def step(self, name: str) -> None:
        self.ran.append(name)
        if name in self.failing:
            raise RuntimeError(f"{name} failed")
        if name == self.hang:
            self.hung.set()
            await asyncio.Event().wait()


def part(steps: Steps, **methods: str) -> SimpleNamespace:
    """A stand-in whose async methods (name -> step) each record their step."""
    return SimpleNamespace(**{m: (lambda name=name: steps.step(name))
                              for m, name in methods.items()})


def closing_agent(steps: Steps) -> SimpleNamespace:
    return part(steps, close="agent.close")


def audit_producer(steps: Steps) -> SimpleNamespace:
    return part(steps, flush="audit.flush")


class AuditFile:
    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    def write(self, record: object) -> None:
        raise AssertionError("nothing is written at shutdown here")

    def sync(self) -> None:  # run in a thread: records the step without awaiting
        self.steps.ran.append("audit.sync")
        if self.steps.fail == "audit.sync":
            raise OSError(5, "Input/output error")


def fan_out(steps: Steps) -> FanOutAgent:
    """A fan-out agent with only what ``close`` uses: the hub and the HTTP client."""
    agent = object.__new__(FanOutAgent)
    agent.hub = part(steps, drain="drain", stop="hub.stop")  # type: ignore[assignment]
    agent.client = part(steps, aclose="client.aclose")  # type: ignore[assignment]
    return agent


async def test_the_audit_records_are_flushed_even_if_closing_the_agent_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    steps = Steps(fail="agent.close")
    agent, producer, audit = closing_agent(steps), audit_producer(steps), AuditFile(steps)
    await close_delivery(agent, producer, audit)  # type: ignore[arg-type]  # logged, not raised
    assert steps.ran == ["agent.close", "audit.sync", "audit.flush"]
    assert "closing delivery at shutdown failed" in caplog.text
    assert "agent.close failed" in caplog.text  # the error's traceback with it


async def test_the_http_pool_is_closed_even_if_stopping_the_hub_raised() -> None:
    steps = Steps(fail="hub.stop")
    with pytest.raises(RuntimeError, match=r"hub\.stop failed"):
        await fan_out(steps).close()
    assert steps.ran == ["drain", "hub.stop", "client.aclose"]


async def test_the_hub_stops_and_the_pool_closes_even_if_draining_raised() -> None:
    steps = Steps(fail="drain")
    with pytest.raises(RuntimeError, match=r"drain failed"):
        await fan_out(steps).close()
    assert steps.ran == ["drain", "hub.stop", "client.aclose"]


@pytest.mark.parametrize("failing", [("drain", "hub.stop", "client.aclose"),
                                     ("hub.stop", "client.aclose")])
async def test_the_first_failure_closing_is_raised_and_the_later_ones_logged_and_noted(
    failing: tuple[str, ...], caplog: pytest.LogCaptureFixture,
) -> None:
    """In nested finally blocks the last failure was raised (the pool's), the cause (the
    drain's, or the stop's) left only as its ``__context__``."""
    steps = Steps(*failing)
    with pytest.raises(RuntimeError) as raised:
        await fan_out(steps).close()
    assert steps.ran == ["drain", "hub.stop", "client.aclose"]
    first, *later = failing
    assert str(raised.value) == f"{first} failed"
    notes = getattr(raised.value, "__notes__", [])
    assert len(notes) == len(later)
    assert all(f"{name} failed" in note for name, note in zip(later, notes, strict=True))
    assert all(f"{name} failed" in caplog.text for name in later)


async def test_a_shutdown_cancelled_after_a_failed_drain_goes_no_further(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The drain's bug, then a cancellation stopping the hub: the cancellation is raised (the
    bug logged and noted on it). Raised in its place, the bug was caught by ``close_delivery``,
    which then synced the audit file and flushed the producer of a cancelled shutdown."""
    steps = Steps("drain", hang="hub.stop")
    agent, producer, audit = fan_out(steps), audit_producer(steps), AuditFile(steps)
    shutdown = asyncio.create_task(close_delivery(agent, producer, audit))  # type: ignore[arg-type]
    await steps.hung.wait()
    shutdown.cancel()
    with pytest.raises(asyncio.CancelledError):
        await shutdown
    assert steps.ran == ["drain", "hub.stop", "client.aclose"]  # every close step, then no more
    assert "drain failed" in caplog.text  # the bug's traceback with it


async def test_a_close_timed_out_after_a_failed_drain_raises_timeout_error() -> None:
    """``asyncio.timeout`` turns the cancellation into ``TimeoutError`` only if the
    cancellation is what comes out: the drain's bug came out instead."""
    steps = Steps("drain", hang="hub.stop")
    deadlines: list[asyncio.Timeout] = []

    async def close_within_a_deadline() -> None:
        async with asyncio.timeout(None) as deadline:
            deadlines.append(deadline)
            await fan_out(steps).close()

    closing = asyncio.create_task(close_within_a_deadline())
    await steps.hung.wait()
    deadlines[0].reschedule(asyncio.get_running_loop().time())  # the deadline passes now
    with pytest.raises(TimeoutError) as raised:
        await closing
    assert steps.ran == ["drain", "hub.stop", "client.aclose"]
    cancelled = raised.value.__context__
    assert isinstance(cancelled, asyncio.CancelledError)
    assert any("drain failed" in note for note in getattr(cancelled, "__notes__", []))


async def test_a_clean_shutdown_runs_every_step_in_order() -> None:
    steps = Steps()
    await close_delivery(closing_agent(steps), audit_producer(steps), AuditFile(steps))  # type: ignore[arg-type]
    await fan_out(steps).close()
    assert steps.ran == ["agent.close", "audit.sync", "audit.flush", "drain", "hub.stop",
                         "client.aclose"]


async def test_a_failed_sync_at_shutdown_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    steps = Steps(fail="audit.sync")
    await close_delivery(closing_agent(steps), audit_producer(steps), AuditFile(steps))  # type: ignore[arg-type]
    assert steps.ran == ["agent.close", "audit.sync", "audit.flush"]
    assert "audit file not synced to disk" in caplog.text


def test_only_a_worker_with_an_audit_file_has_one_to_sync(tmp_path: Path) -> None:
    memory, file = MemoryAudit(), JsonlAudit(tmp_path / "audit.jsonl")
    assert has_file(TeeAudit(memory, file))
    assert has_file(file)
    assert not has_file(TeeAudit(memory))
    assert not has_file(memory)
