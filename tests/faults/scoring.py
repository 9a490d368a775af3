"""The figures of one scenario and partner, from what was produced and what the partner saw. Pure.

**Expected.** ``adapters.fanout.fan_out`` - the function the worker runs - over the alert
versions actually produced on ``alerts`` (each once, per alert in version order, ``now`` = the
event's ``ts``), so the expectation depends on neither timing nor the delivery code: which
alerts a partner should get (coverage, kinds), and which versions (its minimum update interval;
creates and cancels always).

**Received.** The partner's own log (``tests.faults.partners.Request``): every request with its
arrival time (wall clock, the clock the worker stamps ``alerts`` with), webhook-id and answer.
*Accepted* = answered 2xx. Arrival stands for "sent": on loopback they are the same moment.

The figures (docs/reliability.md explains them for readers):

- ``should_reach``: alerts fan-out gives the partner, each life on its own (an alert the
  engine starts again after its cancel has a new partner-facing id) (minus ``excluded``: the
  alert a partner refuses with 400, and alerts still live when a partner said 410 Gone; and minus
  ``ended_unseen``: alerts that began and ended while the partner was down (live for less than
  ``LIVE_MIN_S`` while it took work) and of which it never accepted anything - there is
  nothing at the partner to update or cancel, and the delivery contract sends a cancel only to
  a partner that got the alert);
- ``delivered_current``: of those, alerts whose last accepted version is their final one
  (the cancel): the partner's picture ends right;
- ``lost``: alerts whose final version was never accepted (``lost_final``), or that were live
  (from the event time of their first version to that of their cancel) for ``LIVE_MIN_S`` or
  more while the partner took work, and got no live (non-cancel) version accepted while they
  were live (``lost_live``);
- ``out_of_order``: accepted requests carrying a lower version than one already accepted for
  the alert;
- ``superseded``: versions accepted although a newer version of the alert had been produced
  more than ``GRACE_S`` before they arrived (sent after being superseded; the newer version
  counts whether or not the partner's minimum update interval would send it);
- ``duplicates``: accepted requests whose webhook-id had been accepted before;
- ``stale_as_live``: versions other than a cancel that reached the partner (any answer) after
  their own ``expires_at``;
- ``recover_s``: from the moment the partner (or the broker) is healthy again, ``H``, until
  every alert live at ``H`` is current at the partner: a version at least as new as the newest
  one fan-out gives it with an event time up to ``H`` accepted; None when some never was.
  Event time, not production time: after a broker outage the versions of the outage are
  produced only once it is over, and the partner is current only once it has them;
- ``first_delivery_s``: from ``H`` to the first accepted request.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import msgspec

from adapters.fanout import PartnerSet, ThrottleState, fan_out
from tests.faults.partners import Request
from tests.faults.produced import Produced

LIVE_MIN_S = 2.0  # a live period this long while the partner was healthy must show at the partner
GRACE_S = 1.0  # a newer version produced less than this before a send does not make it superseded
RECOVER_GOAL_S = 2.0


@dataclass(frozen=True, slots=True)
class Expected:
    """One delivery fan-out gives a partner."""

    alert_id: str  # internal alert id
    public_id: str  # the alert id the partner sees (webhook-id without "-v<version>")
    message_id: str  # webhook-id
    version: int  # the engine's
    action: str
    produced_at: float  # Kafka timestamp of the version's first record on ``alerts``
    ts: float  # its event time: the fix (or the moment of staleness) that caused it
    # the version as the partner sees it (in its webhook-id): counted from 1 in each life under
    # a pseudonym (``AlertView.partner_version``), the engine's for a partner given its id
    partner_version: int


@dataclass(frozen=True, slots=True)
class AlertHistory:
    """Every version of one alert as produced (any partner): version -> (time, expires_at)."""

    produced: dict[int, float]
    expires: dict[int, float]
    cancel: int | None  # version of the cancel, if one was produced

    def newer_produced_at(self, version: int, until: int | None = None) -> float:
        """When the first version newer than ``version`` (and at most ``until``: the last of
        its life) was produced (inf: none yet)."""
        return min((at for v, at in self.produced.items()
                    if v > version and (until is None or v <= until)), default=math.inf)


def histories(produced: Iterable[Produced]) -> dict[str, AlertHistory]:
    """Per alert id: when each version was produced and when it expires."""
    at: dict[str, dict[int, float]] = defaultdict(dict)
    exp: dict[str, dict[int, float]] = defaultdict(dict)
    cancel: dict[str, int] = {}
    for p in produced:
        ev = p.event
        at[ev.alert_id][ev.version] = p.at
        exp[ev.alert_id][ev.version] = ev.expires_at.timestamp()
        if ev.action == "cancel":
            cancel[ev.alert_id] = max(ev.version, cancel.get(ev.alert_id, 0))
    return {a: AlertHistory(at[a], exp[a], cancel.get(a)) for a in at}


def expected_deliveries(
    produced: list[Produced], partners: PartnerSet
) -> dict[str, list[Expected]]:
    """Partner id -> the deliveries ``fan_out`` gives it for the produced versions."""
    state: ThrottleState = {}
    out: dict[str, list[Expected]] = defaultdict(list)
    for p in sorted(produced, key=lambda p: (p.event.alert_id, p.event.version)):
        state, deliveries = fan_out(p.event, partners, state, p.event.ts)
        for d in deliveries:
            if d.replace_only:  # throttled: sent only in place of an older one, never owed
                continue
            public = d.view.alert_id
            out[d.partner_id].append(Expected(
                p.event.alert_id, public, d.message_id, p.event.version, p.event.action, p.at,
                p.event.ts.timestamp(), d.view.partner_version,
            ))
    return dict(out)


@dataclass(frozen=True, slots=True)
class PartnerRun:
    """What one partner went through in a scenario (wall-clock times, epoch seconds)."""

    partner_id: str
    requests: list[Request]
    unhealthy: tuple[tuple[float, float], ...] = ()  # when it refused work (by its script)
    recovered_at: float | None = None  # H: the partner, or the broker, healthy again
    refused_alert: str | None = None  # public alert id it answered 400
    gone_from: float | None = None  # when its script started answering 410

    def accepted(self) -> list[Request]:
        return sorted((r for r in self.requests if 200 <= r.status < 300), key=lambda r: r.at)


@dataclass
class Figures:
    """The figures of one partner in one scenario (see the module docstring)."""

    should_reach: int = 0
    excluded: int = 0
    ended_unseen: int = 0
    delivered_current: int = 0
    lost: int = 0
    lost_final: int = 0
    lost_live: int = 0
    out_of_order: int = 0
    superseded: int = 0
    duplicates: int = 0
    stale_as_live: int = 0
    live_at_recovery: int | None = None
    recover_s: float | None = None
    first_delivery_s: float | None = None
    requests: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    unexpected: int = 0  # requests about an alert version never produced
    delay_p50_s: float | None = None  # produced on alerts -> accepted, first acceptance
    delay_max_s: float | None = None
    sent_after_gone: int | None = None  # requests after the first 410 was answered
    refused_alert_requests: int | None = None
    refused_alert_retries: int | None = None  # the same 400'd webhook-id sent again
    examples: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _healthy_overlap(start: float, end: float, unhealthy: tuple[tuple[float, float], ...]) -> float:
    """Seconds of [start, end) outside every unhealthy window."""
    total = max(0.0, end - start)
    for a, b in unhealthy:
        total -= max(0.0, min(end, b) - max(start, a))
    return total


@dataclass
class _Alert:
    """One life of an alert as a partner should get it (its partner-facing id is per life)."""

    alert_id: str
    public_id: str
    expected: list[Expected]

    @property
    def final(self) -> Expected:
        return self.expected[-1]

    @property
    def live_from(self) -> float:
        """Event time of the alert's first version for this partner."""
        return self.expected[0].ts

    @property
    def live_until(self) -> float:
        """Event time of its final version (the cancel: a run ends with every alert cancelled)."""
        return self.final.ts


class Scorer:
    """Figures of one partner: expected deliveries + its log + the scenario's moments."""

    def __init__(self, run: PartnerRun, expected: list[Expected],
                 history: dict[str, AlertHistory]) -> None:
        # a request's version is the partner's (its webhook-id); scored as the engine's, which
        # the history and the expectation are in: per partner-facing id, the two differ by
        # the same amount (the life's first version less one under a pseudonym, else none)
        offset = {e.public_id: e.version - e.partner_version for e in expected}
        run = replace(run, requests=[
            r if r.version is None or r.alert not in offset
            else msgspec.structs.replace(r, version=r.version + offset[r.alert])
            for r in run.requests])
        self.run = run
        self.history = history
        # one entry per life of an alert: a life the engine starts again (a create after the
        # cancel, under the same alert id) has its own partner-facing id and its own final
        by_life: dict[tuple[str, str], list[Expected]] = defaultdict(list)
        for e in expected:
            by_life[e.alert_id, e.public_id].append(e)
        self.alerts = {life: _Alert(life[0], life[1], sorted(es, key=lambda e: e.version))
                       for life, es in by_life.items()}
        self.internal = {al.public_id: al.alert_id for al in self.alerts.values()}
        self.accepted = run.accepted()
        self.gone_at = min((r.answered_at for r in run.requests if r.status == 410),
                           default=None)
        self.figures = Figures()

    def _excluded(self, al: _Alert) -> bool:
        if al.public_id == self.run.refused_alert:
            return True
        return self.run.gone_from is not None and al.live_until >= self.run.gone_from

    def _ended_unseen(self, al: _Alert) -> bool:
        """Began and ended inside the partner's outage, and it never accepted any of it."""
        if any(r.alert == al.public_id for r in self.accepted):
            return False
        return _healthy_overlap(al.live_from, al.live_until, self.run.unhealthy) < LIVE_MIN_S

    def score(self) -> Figures:
        f = self.figures
        kept = [al for al in self.alerts.values() if not self._excluded(al)]
        counted = [al for al in kept if not self._ended_unseen(al)]
        f.should_reach, f.excluded = len(counted), len(self.alerts) - len(kept)
        f.ended_unseen = len(kept) - len(counted)
        self._requests()
        self._order_and_duplicates()
        self._superseded()
        for al in counted:
            self._current_and_lost(al)
        f.lost = len(set(f.examples.get("lost_final", [])) | set(f.examples.get("lost_live", [])))
        self._recovery(counted)
        self._delays()
        self._refusals()
        for k, v in f.examples.items():
            f.examples[k] = sorted(set(v))[:5]
        return f

    def _note(self, what: str, example: str) -> None:
        self.figures.examples.setdefault(what, []).append(example)

    def _requests(self) -> None:
        f = self.figures
        f.requests = len(self.run.requests)
        answers: dict[str, int] = defaultdict(int)
        stale: set[str] = set()
        for r in self.run.requests:
            answers[str(r.status)] += 1
            aid = self.internal.get(r.alert)
            hist = self.history.get(aid) if aid else None
            if hist is None or r.version not in hist.produced:
                f.unexpected += 1
            elif r.action != "cancel" and r.at > hist.expires[r.version]:
                stale.add(r.webhook_id)
                late = r.at - hist.expires[r.version]
                self._note("stale_as_live", f"{r.webhook_id} ({late:.3f} s after its expiry)")
        f.answers = dict(sorted(answers.items()))
        f.stale_as_live = len(stale)

    def _order_and_duplicates(self) -> None:
        f = self.figures
        highest: dict[str, int] = {}
        highest_id: dict[str, str] = {}  # its webhook-id: the version as the partner has it
        seen: set[str] = set()
        for r in self.accepted:
            if r.webhook_id in seen:
                f.duplicates += 1
            seen.add(r.webhook_id)
            if r.version is None:
                continue
            top = highest.get(r.alert, -1)
            if r.version < top:
                f.out_of_order += 1
                self._note("out_of_order", f"{r.webhook_id} after {highest_id[r.alert]}")
            else:
                highest_id[r.alert] = r.webhook_id
            highest[r.alert] = max(top, r.version)

    def _superseded(self) -> None:
        first: dict[str, Request] = {}
        for r in self.accepted:
            first.setdefault(r.webhook_id, r)
        for r in first.values():
            aid = self.internal.get(r.alert)
            hist = self.history.get(aid) if aid else None
            if aid is None or hist is None or r.version is None:
                continue
            # only a newer version of its own life: a later life's create does not supersede
            # this life's cancel
            life = self.alerts.get((aid, r.alert))
            until = None if life is None else life.final.version
            if hist.newer_produced_at(r.version, until) + GRACE_S < r.at:
                self.figures.superseded += 1
                self._note("superseded", r.webhook_id)

    def _current_and_lost(self, al: _Alert) -> None:
        f = self.figures
        mine = [r for r in self.accepted if r.alert == al.public_id and r.version is not None]
        if mine and mine[-1].version == al.final.version:
            f.delivered_current += 1
        if not any(r.version == al.final.version for r in mine):
            self._note("lost_final", al.final.message_id)
            f.lost_final += 1
        live_s = _healthy_overlap(al.live_from, al.live_until, self.run.unhealthy)
        got_live = any(r.action != "cancel" and r.at < al.live_until for r in mine)
        if live_s >= LIVE_MIN_S and not got_live:
            self._note("lost_live", al.final.message_id)
            f.lost_live += 1

    def _recovery(self, counted: list[_Alert]) -> None:
        f, h = self.figures, self.run.recovered_at
        if h is None:
            return
        f.first_delivery_s = next((round(r.at - h, 3) for r in self.accepted if r.at >= h), None)
        live = [al for al in counted if al.live_from <= h < al.live_until]
        f.live_at_recovery = len(live)
        worst = 0.0
        for al in live:
            # the engine's version; named by its webhook-id (the partner's number in it)
            target = max((e for e in al.expected if e.ts <= h), key=lambda e: e.version)
            when = next((r.at for r in self.accepted
                         if r.alert == al.public_id and (r.version or 0) >= target.version),
                        None)
            if when is None:
                self._note("never_current", target.message_id)
                f.recover_s = None
                return
            worst = max(worst, when - h)
        f.recover_s = round(worst, 3)

    def _delays(self) -> None:
        first: dict[str, float] = {}
        for r in self.accepted:
            first.setdefault(r.webhook_id, r.at)
        delays = sorted(first[e.message_id] - e.produced_at
                        for al in self.alerts.values() for e in al.expected
                        if e.message_id in first)
        if delays:
            self.figures.delay_p50_s = round(delays[len(delays) // 2], 3)
            self.figures.delay_max_s = round(delays[-1], 3)

    def _refusals(self) -> None:
        f, run = self.figures, self.run
        if run.gone_from is not None:
            f.sent_after_gone = (0 if self.gone_at is None
                                 else sum(1 for r in run.requests if r.at > self.gone_at))
        if run.refused_alert is not None:
            mine = [r for r in run.requests if r.alert == run.refused_alert]
            f.refused_alert_requests = len(mine)
            f.refused_alert_retries = len(mine) - len({r.webhook_id for r in mine})


def score(run: PartnerRun, expected: list[Expected], history: dict[str, AlertHistory]) -> Figures:
    """The figures of one partner (see the module docstring)."""
    return Scorer(run, expected, history).score()


def unsettled(run: PartnerRun, expected: list[Expected]) -> int:
    """How many alerts the partner should still get the final version of (the runner waits
    for none, or gives up after a while)."""
    finals: dict[tuple[str, str], Expected] = {}  # per life (its partner-facing id), as scored
    for e in expected:
        life = (e.alert_id, e.public_id)
        if life not in finals or e.version > finals[life].version:
            finals[life] = e
    got = {r.webhook_id for r in run.accepted()}
    gone = run.gone_from
    return sum(
        1 for e in finals.values()
        if e.message_id not in got and e.public_id != run.refused_alert
        and not (gone is not None and e.ts >= gone)
    )
