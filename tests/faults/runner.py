"""Runs one scenario on the real parts and scores it.

1. Partners: one :class:`~tests.faults.partners.TimedPartner` per push partner on 127.0.0.1,
   and a partners file pointing at them (development secrets: loopback only).
2. Topics under a fresh prefix, worker(s) started as subprocesses with that partners file, and
   ready (``/health``) before any traffic.
3. Traffic (:mod:`tests.faults.traffic`) from a thread; the partners' scripts start their clock
   at the same moment; the scenario's actions run from here at their times.
4. After the traffic: wait (bounded) until every partner has the final version of every alert
   it should get, then a few seconds for stragglers; read ``alerts`` back; score each partner.

A part that fails (a worker that will not start, Kafka that will not come back) raises; the
caller records the scenario as an error and goes on with the next one.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from adapters.config import dev_secret
from adapters.fanout import PartnerSet
from adapters.partners_file import load_partners
from broker.streams.produce import ensure_topics
from tests.faults import scoring
from tests.faults.partners import CONTROLS, SUBJECT, Script, TimedPartner, partners_file
from tests.faults.processes import ConsumerGroup, KafkaNode, PartFailed, WorkerProcess
from tests.faults.produced import AlertLog, Produced
from tests.faults.scenarios import Action, Scenario
from tests.faults.traffic import (
    POSITIONS,
    ROUTES,
    Planned,
    TrafficSource,
    emergency_units,
    hostile_lines,
    make_producer,
    plan,
)
from tests.worker_process import REPO, answers

PARTNERS = (SUBJECT, *CONTROLS)
PARTITIONS = 8
SETTLE_S = 3.0  # after the last expected delivery: time for duplicates and stragglers
CATCH_UP_MAX_S = 180.0  # after the traffic: how long the workers may take to work off a backlog
STUCK_S = 15.0  # stop waiting when nothing new was produced or requested for this long


@dataclass
class Options:
    """How to run (the command line's choices)."""

    bootstrap: str
    kafka: KafkaNode | None  # the suite's own broker (needed to restart it), or None
    out: Path  # per-scenario working directories (logs, partner logs) go under it
    seed: int = 14
    units: int = 16
    drain_max_s: float = 40.0


@dataclass
class Run:
    """One scenario's running parts and what happened when."""

    sc: Scenario
    opts: Options
    workdir: Path
    prefix: str
    partners: dict[str, TimedPartner] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    recovered: list[float] = field(default_factory=list)  # wall times the broker was whole again
    # wall-clock windows in which the broker could deliver nothing (a worker killed or stopped
    # until it is serving again, Kafka stopped until it answers): no partner can be warned then
    broker_down: list[tuple[float, float]] = field(default_factory=list)
    kafka_down_at: float | None = None
    partner_set: PartnerSet | None = None
    group: ConsumerGroup | None = None
    t0: float = 0.0
    wall0: float = 0.0
    plan_units: list[str] = field(default_factory=list)
    plan: list[Planned] = field(default_factory=list)

    def rel(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def note(self, what: str) -> None:
        self.timeline.append({"at_s": self.rel(), "what": what})

    # -- parts --------------------------------------------------------------------------------

    def start_partners(self) -> None:
        for pid in PARTNERS:
            p = TimedPartner(secrets=[dev_secret(pid, "webhook secret")], partner_id=pid,
                             script=self.sc.scripts.get(pid, Script()))
            self.partners[pid] = p.start()
        path = partners_file(self.workdir / "partners.toml",
                             {pid: p.base_url() for pid, p in self.partners.items()})
        config = load_partners(path, env={}, allow_dev_defaults=True)
        for partner in config.partners:
            assert partner.secret is not None
            assert partner.secret.reveal() == dev_secret(partner.id, "webhook secret")
        self.partner_set = PartnerSet.from_config(config)

    def new_worker(self) -> WorkerProcess:
        w = WorkerProcess(
            name=f"worker{len(self.workers)}", bootstrap=self.opts.bootstrap,
            app_id=self.prefix.rstrip("."), prefix=self.prefix, workdir=self.workdir,
            env={"BROKER_PARTNERS": str(self.workdir / "partners.toml"),
                 "BROKER_AUDIT_FILE": str(self.workdir / f"audit-{len(self.workers)}.jsonl")},
        )
        self.workers.append(w)
        w.start()
        return w

    def serving(self, members: int = 1, *, not_before: set[str] | None = None) -> set[str]:
        """Wait until the group is stable with ``members`` members owning every partition
        (none of ``not_before``), and the running workers' /health agrees; the member ids."""
        assert self.group is not None
        ids = self.group.wait(members=members, partitions=PARTITIONS, not_before=not_before,
                              alive=lambda: any(w.alive() for w in self.workers))
        for w in self.workers:
            if w.alive():
                w.wait_healthy()
        return ids

    def members(self) -> set[str]:
        assert self.group is not None
        return set(self.group.owners() or ())

    def stop_all(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.stop()
        for p in self.partners.values():
            with contextlib.suppress(Exception):
                p.stop()

    # -- actions (scenarios.Action kinds) ----------------------------------------------------

    def kill9(self, action: Action) -> None:
        """SIGKILL the worker once a request is in flight (up to 10 s), restart it at once."""
        w = self.workers[action.arg]
        self._await_in_flight()
        flying = sum(p.in_flight for p in self.partners.values())
        before = self.members()
        down = time.time()
        w.kill9()
        self.note(f"kill -9 {w.name} ({flying} requests in flight)")
        w.start()
        self.serving(not_before=before)
        self.recovered.append(time.time())
        self.broker_down.append((down, self.recovered[-1]))
        self.note(f"{w.name} restarted; the group has it as its one member")

    def restart(self, action: Action) -> None:
        w = self.workers[action.arg]
        before = self.members()
        self.note(f"stopping {w.name} (SIGTERM)")
        down = time.time()
        w.stop()
        self.note(f"{w.name} stopped")
        w.start()
        self.serving(not_before=before)
        self.recovered.append(time.time())
        self.broker_down.append((down, self.recovered[-1]))
        self.note(f"{w.name} started again; the group has it as its one member")

    def join(self, action: Action) -> None:
        w = self.new_worker()
        self.note(f"{w.name} started (joins the group)")
        self.serving(members=2)
        self.recovered.append(time.time())
        self.note("the group is stable with 2 members")

    def leave(self, action: Action) -> None:
        w = self.workers[action.arg]
        self.note(f"stopping {w.name} (SIGTERM: it leaves the group)")
        w.stop()
        self.note(f"{w.name} stopped")
        self.serving(members=1)
        self.recovered.append(time.time())
        self.note(f"the one member left owns all {PARTITIONS} partitions")

    def freeze(self, action: Action) -> None:
        """SIGSTOP the worker once a request is in flight (up to 10 s); wait until the group
        has evicted it (its session timed out) and the others own every partition."""
        w = self.workers[action.arg]
        self._await_in_flight()
        flying = sum(p.in_flight for p in self.partners.values())
        down = time.time()
        w.freeze()
        self.note(f"{w.name} frozen (SIGSTOP, {flying} requests in flight)")
        others = [o for o in self.workers if o is not w and o.alive()]
        assert self.group is not None
        self.group.wait(members=len(others), partitions=PARTITIONS,
                        alive=lambda: any(o.alive() for o in others))
        for o in others:
            o.wait_healthy()
        self.recovered.append(time.time())
        self.broker_down.append((down, self.recovered[-1]))
        self.note(f"the group has evicted {w.name}: {len(others)} member(s) own all "
                  f"{PARTITIONS} partitions")

    def thaw(self, action: Action) -> None:
        """SIGCONT the frozen worker (it goes on with what it held in memory); note when the
        group is whole again with it (bounded: a zombie that never rejoins is noted)."""
        w = self.workers[action.arg]
        w.thaw()
        self.note(f"{w.name} thawed (SIGCONT)")
        members = sum(o.alive() for o in self.workers)
        assert self.group is not None
        try:
            self.group.wait(members=members, partitions=PARTITIONS, timeout_s=60.0,
                            alive=lambda: all(o.alive() for o in self.workers))
        except PartFailed as err:
            self.note(f"the group is not whole again with {w.name}: {err}")
            return
        self.note(f"{w.name} is back in the group ({members} members)")

    def _await_in_flight(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not any(p.in_flight for p in self.partners.values()):
            time.sleep(0.02)

    def kafka_stop(self, action: Action) -> None:
        assert self.opts.kafka is not None
        self.note("stopping Kafka")
        self.kafka_down_at = time.time()
        self.opts.kafka.stop()
        self.note("Kafka stopped")

    def kafka_start(self, action: Action) -> None:
        assert self.opts.kafka is not None
        self.note("starting Kafka")
        try:
            self.opts.kafka.start()
        except PartFailed as err:  # the suite's broker, not the system under test: once more
            self.note(f"Kafka did not start ({str(err).splitlines()[0]}); starting it again")
            self.opts.kafka.start()
        self.recovered.append(time.time())
        down = self.kafka_down_at if self.kafka_down_at is not None else self.recovered[-1]
        self.broker_down.append((down, self.recovered[-1]))
        self.note("Kafka started again (data kept)")

    def hostile(self, action: Action) -> None:
        units = emergency_units(self.plan, self.rel()) or self.plan_units
        self.note(f"hostile burst starts on {len(units)} units' keys")
        producer = make_producer(self.opts.bootstrap)
        try:
            for key, value in hostile_lines(units, action.arg, datetime.now(UTC)):
                producer.send(self.prefix + POSITIONS, key=key.encode(), value=value)
            producer.flush(timeout=120)
        finally:
            producer.close(timeout=10)
        self.recovered.append(time.time())
        self.note(f"{action.arg:,} hostile lines in avl.positions")

    def perform(self, action: Action) -> None:
        actions: dict[str, Callable[[Action], None]] = {
            "kill9": self.kill9, "restart": self.restart, "join": self.join,
            "leave": self.leave, "kafka_stop": self.kafka_stop,
            "kafka_start": self.kafka_start, "hostile": self.hostile,
            "freeze": self.freeze, "thaw": self.thaw,
        }
        actions[action.kind](action)


# ---- the moments each partner is judged by ---------------------------------------------------

def _script_windows(run: Run, p: TimedPartner) -> list[tuple[float, float]]:
    """Wall-clock windows in which the partner refused work (by its script; refused windows
    as they really happened)."""
    s = p.script
    out = [(run.wall0 + a, run.wall0 + b) for a, b in s.unavailable + s.throttled]
    downs = [t for kind, t in p.events if kind == "down"]
    ups = [t for kind, t in p.events if kind == "up"]
    out += list(zip(downs, ups + [time.time()] * (len(downs) - len(ups)), strict=False))
    return sorted(out)


def _healthy_again(run: Run, p: TimedPartner) -> float | None:
    """When the partner took work again: the end of its last window, or later if it asked
    (Retry-After) for more time."""
    windows = _script_windows(run, p)
    if not windows:
        return None
    end = windows[-1][1]
    for r in p.log:
        if r.status == 429 and r.retry_after and r.retry_after.isdigit():
            end = max(end, r.answered_at + int(r.retry_after))
    return end


def partner_runs(run: Run) -> dict[str, scoring.PartnerRun]:
    """Each partner's log and moments, as the scorer takes them."""
    subject_h = _healthy_again(run, run.partners[SUBJECT])
    broker_h = max(run.recovered) if run.recovered else None
    out = {}
    for pid, p in run.partners.items():
        own_h = _healthy_again(run, p)
        # the later of the two where both fail (a worker restarted while a partner was down)
        h = max((t for t in (broker_h, own_h or subject_h) if t is not None), default=None)
        gone = p.script.gone_from_s
        out[pid] = scoring.PartnerRun(
            partner_id=pid, requests=list(p.log),
            unhealthy=tuple(sorted(_script_windows(run, p) + run.broker_down)),
            recovered_at=h, refused_alert=p.refused_alert,
            gone_from=None if gone is None else run.wall0 + gone,
        )
    return out


# ---- the run ----------------------------------------------------------------------------------

def _caught_up(run: Run, group: ConsumerGroup) -> None:
    """Wait (bounded) until the workers have committed all the input: whatever is still to
    reach the partners after that is the delivery's doing, not a backlog's."""
    deadline = time.monotonic() + CATCH_UP_MAX_S
    lag = -1
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # Kafka busy: ask again
            lag = group.lag()
            if lag == 0:
                break
        time.sleep(1.0)
    run.note("the workers have committed all the input" if lag == 0
             else f"the workers are still {lag} messages behind; not waiting longer")


def _drain(run: Run, log: AlertLog) -> list[Produced]:
    """Once the workers have caught up with the input: wait until every partner has every
    final version it should get - or until nothing new was produced or requested for
    ``STUCK_S``, or ``drain_max_s`` - then a few seconds more; returns what was produced."""
    assert run.partner_set is not None and run.group is not None
    _caught_up(run, run.group)
    deadline = time.monotonic() + run.opts.drain_max_s
    seen: tuple[int, int] | None = None
    moved = time.monotonic()
    while True:
        produced = log.read()
        expected = scoring.expected_deliveries(produced, run.partner_set)
        runs = partner_runs(run)
        left = {pid: scoring.unsettled(runs[pid], expected.get(pid, [])) for pid in runs}
        now = time.monotonic()
        state = (len(produced), sum(len(p.log) for p in run.partners.values()))
        if state != seen:
            seen, moved = state, now
        if not any(left.values()) or now > deadline or now - moved > STUCK_S:
            run.note(f"drained: final versions still missing per partner {left}")
            break
        time.sleep(1.0)
    time.sleep(SETTLE_S)
    return log.read()


def _traffic(run: Run) -> TrafficSource:
    run.plan = plan(run.opts.seed, run.opts.units, run.sc.duration_s)
    run.plan_units = sorted({m.unit for m in run.plan})
    return TrafficSource(run.plan, run.opts.bootstrap, run.prefix)


def _play(run: Run, source: TrafficSource) -> None:
    """Traffic on, partners' clocks on, actions at their times, until the traffic ends."""
    run.t0, run.wall0 = time.monotonic(), time.time()
    source.start(run.t0)
    for p in run.partners.values():
        p.begin(run.t0)
    run.note(f"traffic starts: {len(run.plan_units)} units, {len(run.plan)} messages over "
             f"{run.sc.duration_s:.0f} s")
    for action in sorted(run.sc.actions, key=lambda a: a.at_s):
        time.sleep(max(0.0, run.t0 + action.at_s - time.monotonic()))
        run.perform(action)
    source.join(timeout=run.sc.duration_s + 300)
    run.note(f"traffic ends: {source.stats.sent} sent, {source.stats.failed} failed")


def _score(run: Run, produced: list[Produced]) -> dict[str, Any]:
    assert run.partner_set is not None
    expected = scoring.expected_deliveries(produced, run.partner_set)
    history = scoring.histories(produced)
    runs = partner_runs(run)
    return {pid: scoring.score(runs[pid], expected.get(pid, []), history).as_dict()
            for pid in PARTNERS}


def _partner_notes(run: Run) -> None:
    """The partners' own moments (listening stopped / again) into the timeline, in order."""
    for pid, p in run.partners.items():
        for kind, wall in p.events:
            what = "stops listening" if kind == "down" else "listens again"
            run.timeline.append({"at_s": round(wall - run.wall0, 2), "what": f"{pid} {what}"})
    run.timeline.sort(key=lambda e: e["at_s"])


def _save_logs(run: Run) -> None:
    enc = msgspec.json.Encoder()
    for pid, p in run.partners.items():
        with (run.workdir / f"partner-{pid}.jsonl").open("wb") as fh:
            for r in p.log:
                fh.write(enc.encode(r) + b"\n")


def _save_alerts(run: Run, log: AlertLog) -> None:
    """Every record read back from ``alerts`` (copies too, in the order read), with its Kafka
    timestamp: who produced what when, for reading a run afterwards."""
    with (run.workdir / "alerts.jsonl").open("wb") as fh:
        for value, ts_ms in log.records:
            fh.write(b'{"kafka_ts":%.3f,"event":%s}\n' % (ts_ms / 1000.0, value))


def _shown(path: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def run_scenario(sc: Scenario, opts: Options) -> dict[str, Any]:
    """Run ``sc`` and return its raw result (figures per partner, timeline, counts)."""
    if sc.needs_own_kafka and opts.kafka is None:
        raise PartFailed("needs the suite's own Kafka broker (it restarts it): run without "
                         "--bootstrap")
    workdir = opts.out / sc.name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    run = Run(sc, opts, workdir, prefix=f"f{uuid.uuid4().hex[:8]}.")
    started = time.time()
    try:
        run.start_partners()
        ensure_topics(opts.bootstrap, [run.prefix + POSITIONS, run.prefix + ROUTES],
                      partitions=PARTITIONS)
        run.group = ConsumerGroup(opts.bootstrap, run.prefix.rstrip("."),
                                  [run.prefix + POSITIONS, run.prefix + ROUTES])
        for _ in range(sc.workers):
            run.new_worker()
        run.serving(members=sc.workers)
        source = _traffic(run)
        log = AlertLog(opts.bootstrap, run.prefix + "alerts")
        try:
            _play(run, source)
            if not answers(opts.bootstrap):
                raise PartFailed("Kafka does not answer after the traffic")
            produced = _drain(run, log)
            _save_alerts(run, log)
        finally:
            source.stop()
            log.close()
        figures = _score(run, produced)
        _partner_notes(run)
    finally:
        run.stop_all()
        if run.group is not None:
            run.group.close()
        _save_logs(run)
    return {
        "name": sc.name, "title": sc.title, "what": sc.what,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - started, 1),
        "recovered_at_s": round(max(run.recovered) - run.wall0, 2) if run.recovered else None,
        "timeline": run.timeline,
        "source": asdict(source.stats),
        "alerts": len({p.event.alert_id for p in produced}),
        "alert_versions": len(produced),
        "alert_records": sum(p.copies for p in produced),
        "figures": figures,
        "logs": _shown(workdir),
    }
