"""Stand-ins shared by the tests of the vehicle agent's state cache (``broker.streams.states``):
its table and changelog writes without Kafka, and a worker app without partners."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from broker.model import VehicleState
from broker.streams.app import create_app
from broker.streams.settings import from_env
from broker.streams.states import VehicleStates


class Table:
    """A dict standing in for the table's store, recording the order of effects; each write's
    produce future is left for the test to resolve (``writes``)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.log: list[str] = []
        self.writes: list[asyncio.Future[Any]] = []

    def read(self, key: bytes) -> bytes | None:
        self.log.append(f"read {key.decode()}")
        return self.data.get(key)

    async def write(self, key: bytes, raw: bytes | None) -> asyncio.Future[Any]:
        self.log.append(f"write {key.decode()}" if raw is not None else f"delete {key.decode()}")
        if raw is None:
            self.data.pop(key, None)
        else:
            self.data[key] = raw
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.writes.append(fut)
        return fut


class Written:
    """A changelog write Kafka answers at once, the keys written kept in order (``keys``)."""

    def __init__(self) -> None:
        self.keys: list[bytes] = []

    async def __call__(self, key: bytes, raw: bytes | None) -> asyncio.Future[Any]:
        self.keys.append(key)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def never_written(key: bytes, raw: bytes | None) -> Any:
    """The write of a cache whose test changes no state."""
    raise AssertionError("no state changed: nothing to write")


def state(vid: str, n: int = 0) -> VehicleState:
    """A vehicle's state, told apart from its others by ``n``."""
    return VehicleState(vehicle_id=vid, rejected_in_a_row=n)


def make_states(table: Table, epoch: list[int], paused: list[bool] | None = None,
                **kw: Any) -> VehicleStates:
    """A state cache over ``table``, its epoch ``epoch[0]``, rebalancing while ``paused[0]``."""
    p = paused if paused is not None else [False]
    return VehicleStates(read=table.read, write=table.write, epoch=lambda: epoch[0],
                         paused=lambda: p[0], **kw)


def worker_app(tmp_path: Path) -> Any:
    """A worker app without partners (not started: its ``broker_states`` and ``broker_runtime``
    are what the tests use)."""
    return create_app(from_env({"BROKER_PARTNERS": "", "BROKER_DATA_DIR": str(tmp_path)}))
