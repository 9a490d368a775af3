"""The scenarios of issue 14 item 7, as data: traffic length, partner scripts, actions by time.

Every scenario runs the same live traffic (``tests.faults.traffic``) for ``lead_s`` seconds
before its fault, during the fault, and ``tail_s`` seconds after, then waits for deliveries to
settle. Partner faults are :class:`~tests.faults.partners.Script` s of ``navapp`` (``mapco``
and ``county`` stay healthy beside it); faults of the broker's own parts are :class:`Action` s
the runner performs at a time (``tests.faults.runner``). ``quick`` gives the short variants the
``make test`` subset runs (10 s faults, about a minute of traffic).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.faults.partners import SUBJECT, Script
from tests.worker_process import WORKER_ENV

SESSION_TIMEOUT_S = float(WORKER_ENV["BROKER_SESSION_TIMEOUT_S"])  # the suite's workers'

ActionKind = str  # one of Run.perform's: kill9, restart, join, leave, freeze, thaw, kafka_stop, ...


@dataclass(frozen=True, slots=True)
class Action:
    """Something the runner does ``at_s`` seconds into the traffic."""

    at_s: float
    kind: ActionKind
    arg: int = 0  # worker index, or line count of the hostile burst


@dataclass(frozen=True, slots=True)
class Scenario:
    """One fault and how long the traffic runs around it."""

    name: str
    title: str
    what: str  # one paragraph for the report
    lead_s: float
    fault_s: float
    tail_s: float
    scripts: dict[str, Script] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()
    workers: int = 1
    needs_own_kafka: bool = False

    @property
    def duration_s(self) -> float:
        return self.lead_s + self.fault_s + self.tail_s


def _sizes(quick: bool) -> tuple[float, float, float, float]:
    """(lead, short fault, long fault, tail) seconds."""
    return (20.0, 10.0, 60.0, 20.0) if quick else (30.0, 30.0, 300.0, 35.0)


def _partner_faults(quick: bool) -> list[Scenario]:
    lead, short, long, tail = _sizes(quick)
    return [
        Scenario(
            "partner_down", f"partner down {short:.0f} s (connection refused), then back",
            f"navapp's listening socket is closed (connections refused, open ones cut) from "
            f"{lead:.0f} s to {lead + short:.0f} s of traffic, then it listens again on the "
            "same port. H = the moment it listens again.",
            lead, short, tail,
            scripts={SUBJECT: Script(refused=((lead, lead + short),))},
        ),
        Scenario(
            "partner_down_long", f"partner down {long / 60:g} min (503), then back",
            f"navapp answers 503 (no Retry-After) from {lead:.0f} s to {lead + long:.0f} s. "
            "H = the end of the window.",
            lead, long, tail,
            scripts={SUBJECT: Script(unavailable=((lead, lead + long),))},
        ),
        Scenario(
            "partner_429", f"partner answers 429 with Retry-After: 2 for {short:.0f} s",
            f"navapp answers 429 with `Retry-After: 2` from {lead:.0f} s to "
            f"{lead + short:.0f} s. H = the end of the window or the last Retry-After given, "
            "whichever is later.",
            lead, short, tail,
            scripts={SUBJECT: Script(throttled=((lead, lead + short),), retry_after_s=2)},
        ),
        Scenario(
            "partner_400_one_alert", "partner answers 400 to one alert only",
            f"From {lead:.0f} s navapp answers 400 to every request about the first alert "
            "whose create it gets (that alert only; it is excluded from its figures). Nothing "
            "else changes: a rejected payload must not hold up other alerts.",
            lead, 0.0, tail + short,
            scripts={SUBJECT: Script(reject_one_alert_from_s=lead)},
        ),
        Scenario(
            "partner_410", "partner answers 410 Gone, then the worker restarts",
            f"navapp answers 410 to everything from {lead:.0f} s; at {lead + short:.0f} s the "
            "worker is stopped (SIGTERM) and started again: a 410 must survive the restart. "
            "navapp's alerts still live at its 410 are excluded from its figures.",
            lead, short, tail,
            scripts={SUBJECT: Script(gone_from_s=lead)},
            actions=(Action(lead + short, "restart"),),
        ),
        Scenario(
            "slow_partner", "a slow partner (5 s per request) beside fast ones",
            "navapp takes 5 s to answer every request (200, client timeout 10 s) for the whole "
            "run; mapco and county answer at once. No recovery moment: the figures say whether "
            "navapp stays current and whether the others are held up.",
            lead, short, tail,
            scripts={SUBJECT: Script(latency_s=5.0)},
        ),
    ]


def _broker_faults(quick: bool) -> list[Scenario]:
    lead, short, _long, tail = _sizes(quick)
    busy = Script(latency_s=0.1)  # answers take 100 ms: deliveries are in flight at the kill
    # clearly past the session (the group evicts); the full one also past the engine's 30 s
    # stale timeout, so a thawed worker's clocks say its units went silent
    freeze = 2.5 * SESSION_TIMEOUT_S if quick else 5 * SESSION_TIMEOUT_S
    return [
        Scenario(
            "worker_kill9", "kill -9 of the worker while deliveries are in flight",
            f"Every partner answers after 100 ms. At {lead:.0f} s (once a request is in "
            "flight) the worker gets SIGKILL and is started again at once with an empty data "
            "dir (state from the changelogs). H = the new worker's /health says ready.",
            lead, short, tail,
            scripts={pid: busy for pid in (SUBJECT, "mapco", "county")},
            actions=(Action(lead, "kill9"),),
        ),
        Scenario(
            "partner_down_kill9", "kill -9 of the worker while a partner is down",
            f"navapp answers 503 from {lead:.0f} s to {lead + short:.0f} s; at "
            f"{lead + short / 2:.0f} s the worker gets SIGKILL and is started again at once "
            "(state from the changelogs). The alerts whose deliveries to navapp were still "
            "being retried sit among alerts already delivered to everyone: the restarted "
            "worker must read them again, not start past them. H = navapp answers again.",
            lead, short, tail,
            scripts={SUBJECT: Script(unavailable=((lead, lead + short),))},
            actions=(Action(lead + short / 2, "kill9"),),
        ),
        Scenario(
            "rebalance", "two workers, a rebalance mid-stream each way",
            f"Partners answer after 100 ms. At {lead:.0f} s a second worker joins the group "
            f"(partitions move to it); at {lead + short:.0f} s the first one leaves (SIGTERM; "
            "its partitions move back). H = the second worker owns all 8 partitions.",
            lead, short, tail,
            scripts={pid: busy for pid in (SUBJECT, "mapco", "county")},
            actions=(Action(lead, "join"), Action(lead + short, "leave")),
            workers=1,
        ),
        Scenario(
            "worker_freeze", f"a worker frozen {freeze:.0f} s (SIGSTOP) and evicted, then thawed",
            f"Two workers, partners answering after 100 ms. At {lead:.0f} s (once a request is "
            f"in flight) worker 0 gets SIGSTOP: every thread stops as in a long GC pause or a "
            f"VM stall, with its alerts, queued deliveries and states in memory. Its session "
            f"({SESSION_TIMEOUT_S:g} s, as every suite worker's) runs out and the group moves "
            f"its partitions to worker 1. At {lead + freeze:.0f} s it gets SIGCONT and goes "
            "on, a zombie, until it finds out it lost them (then it rejoins). Whatever it "
            "delivers, produces or commits before that must not put a superseded or stale "
            "version at a partner. H = the group has evicted it and worker 1 owns all 8 "
            "partitions. Before the worker held a lease on its partitions (2026-12-06), 3 of 6 "
            "quick runs lost an alert at every partner: resumed, the zombie most likely "
            "wrote its old states, and when its partitions came back it made versions of its "
            "alerts again "
            "with other contents and never cancelled the life the partners had "
            "(docs/streams.md, \"A worker that was frozen\"); 5 of 5 after it lost nothing.",
            lead, freeze, tail,
            scripts={pid: busy for pid in (SUBJECT, "mapco", "county")},
            actions=(Action(lead, "freeze"), Action(lead + freeze, "thaw")),
            workers=2,
        ),
        Scenario(
            "kafka_restart", f"the Kafka broker stopped for {short:.0f} s and restarted",
            f"At {lead:.0f} s the suite's Kafka broker is stopped (controlled shutdown), "
            f"{short:.0f} s later started again with its data. The traffic source buffers "
            "meanwhile (an AVL gateway would) and reconnects as a Kafka client does by "
            "default (backoff doubling to 1 s, jittered), so up to ~1.2 s of the time to "
            "recover is the source's; with a 150 ms ceiling the same run recovered in 0.38 s "
            "(2026-12-05). H = Kafka answers again.",
            lead, short, tail,
            actions=(Action(lead, "kafka_stop"), Action(lead + short, "kafka_start")),
            needs_own_kafka=True,
        ),
        Scenario(
            "hostile_input",
            f"{'10k' if quick else '100k'} hostile lines into avl.positions mid-stream",
            f"At {lead:.0f} s, on the live units' keys: fixes dated 10 min, 1 day and in the "
            "year 9000 ahead, in 1970, 1 h and 20 years back, then malformed lines of ten kinds "
            "(not JSON, missing fields, out of range, polar, unknown status, control "
            "characters, bad or wrong-typed values, NaN, oversized text), "
            f"{10_000 if quick else 100_000:,} lines in all. H = the last line is in Kafka.",
            lead, short, tail,
            actions=(Action(lead, "hostile", 10_000 if quick else 100_000),),
        ),
    ]


def scenarios(quick: bool = False) -> list[Scenario]:
    """Every scenario, in the order the report lists them."""
    return _partner_faults(quick) + _broker_faults(quick)


def by_name(quick: bool = False) -> dict[str, Scenario]:
    return {s.name: s for s in scenarios(quick)}
