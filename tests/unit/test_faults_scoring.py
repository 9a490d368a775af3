"""The fault suite's figures (``tests.faults.scoring``) on hand-made logs: one alert, four
versions 10 s apart, and what the partner ``navapp`` saw of them."""

from __future__ import annotations

from dataclasses import replace

import msgspec
import pytest

from adapters.fanout import PartnerSet
from adapters.partners_file import load_partners
from tests.faults.partners import Request, partners_file
from tests.faults.produced import Produced
from tests.faults.scoring import (
    Expected,
    Figures,
    PartnerRun,
    expected_deliveries,
    histories,
    score,
    unsettled,
)
from tests.unit.adapters.factory import alert

ACTIONS = ("create", "update", "update", "cancel")
PRODUCED = [Produced(alert(action, v), alert(action, v).ts.timestamp() + 0.01, 1)
            for v, action in enumerate(ACTIONS, start=1)]
START = PRODUCED[0].at  # v1 produced; v2 at +10 s, v3 at +20 s, the cancel v4 at +30 s


@pytest.fixture(scope="module")
def navapp(tmp_path_factory: pytest.TempPathFactory) -> list[Expected]:
    path = tmp_path_factory.mktemp("faults") / "partners.toml"
    partners_file(path, dict.fromkeys(("navapp", "mapco", "county"), "http://127.0.0.1:1"))
    partners = PartnerSet.from_config(load_partners(path, env={}, allow_dev_defaults=True))
    expected = expected_deliveries(PRODUCED, partners)
    assert {pid: len(es) for pid, es in expected.items()} == {"navapp": 4, "mapco": 4,
                                                              "county": 4}
    return expected["navapp"]


def got(expected: list[Expected], *received: tuple[int, float], status: int = 200
        ) -> list[Request]:
    """Requests for (version, seconds after v1 was produced), in that order."""
    by_version = {e.version: e for e in expected}
    return [
        Request(at=START + dt, answered_at=START + dt, webhook_id=by_version[v].message_id,
                alert=by_version[v].public_id, version=v, action=by_version[v].action,
                status=status)
        for v, dt in received
    ]


def figures(expected: list[Expected], requests: list[Request], **run: object) -> Figures:
    return score(PartnerRun("navapp", requests, **run), expected,  # type: ignore[arg-type]
                 histories(PRODUCED))


def test_each_version_on_time_meets_every_goal(navapp: list[Expected]) -> None:
    f = figures(navapp, got(navapp, (1, 0.02), (2, 10.02), (3, 20.02), (4, 30.02)))
    assert (f.should_reach, f.delivered_current, f.lost, f.out_of_order, f.superseded,
            f.duplicates, f.stale_as_live, f.unexpected) == (1, 1, 0, 0, 0, 0, 0, 0)
    assert f.recover_s is None and f.live_at_recovery is None  # no fault, no H
    assert f.delay_p50_s is not None and f.delay_p50_s < 0.1


def test_a_version_after_a_higher_one_is_out_of_order_and_not_current(
    navapp: list[Expected],
) -> None:
    f = figures(navapp, got(navapp, (1, 0.1), (2, 10.1), (4, 32.1), (3, 32.2)))
    assert (f.out_of_order, f.delivered_current, f.lost) == (1, 0, 0)
    assert f.superseded == 1  # v3 arrived 2 s after v4 existed


def test_superseded_needs_the_newer_version_produced_a_second_before(
    navapp: list[Expected],
) -> None:
    late = figures(navapp, got(navapp, (1, 0.1), (2, 21.5), (3, 21.6), (4, 30.1)))
    in_flight = figures(navapp, got(navapp, (1, 0.1), (2, 20.5), (3, 20.6), (4, 30.1)))
    assert (late.superseded, in_flight.superseded) == (1, 0)


def test_duplicates_and_stale_versions(navapp: list[Expected]) -> None:
    f = figures(navapp, got(navapp, (1, 0.1), (1, 0.2), (2, 75.0), (4, 76.0)))
    assert f.duplicates == 1
    assert f.stale_as_live == 1  # v2 expires 60 s after its ts
    assert f.lost == 0


def test_lost_when_the_cancel_never_arrives_or_nothing_arrives_while_live(
    navapp: list[Expected],
) -> None:
    no_cancel = figures(navapp, got(navapp, (1, 0.1), (2, 10.1), (3, 20.1)))
    assert (no_cancel.lost, no_cancel.lost_final, no_cancel.delivered_current) == (1, 1, 0)
    after_the_fact = figures(navapp, got(navapp, (1, 31.0), (2, 31.1), (3, 31.2), (4, 31.3)))
    assert (after_the_fact.lost, after_the_fact.lost_live) == (1, 1)
    down_all_along = figures(navapp, got(navapp, (1, 31.0), (2, 31.1), (3, 31.2), (4, 31.3)),
                             unhealthy=((START - 5, START + 29),))
    assert down_all_along.lost == 0  # only 1 s of its life was the partner taking work


def test_recovery_is_until_every_alert_live_at_h_is_current(navapp: list[Expected]) -> None:
    requests = got(navapp, (1, 0.1), (2, 18.0), (3, 20.1), (4, 30.1))
    f = figures(navapp, requests, recovered_at=START + 15.0, unhealthy=((START + 5, START + 15),))
    assert (f.live_at_recovery, f.recover_s, f.first_delivery_s) == (1, 3.0, 3.0)
    never = figures(navapp, got(navapp, (1, 0.1)), recovered_at=START + 15.0)
    assert never.recover_s is None and never.examples["never_current"]


def test_a_refused_alert_is_left_out_and_its_retries_counted(navapp: list[Expected]) -> None:
    requests = got(navapp, (1, 0.1), (1, 0.7), (2, 10.1), status=400)
    f = figures(navapp, requests, refused_alert=navapp[0].public_id)
    assert (f.should_reach, f.excluded, f.lost) == (0, 1, 0)
    assert (f.refused_alert_requests, f.refused_alert_retries) == (3, 1)
    assert unsettled(PartnerRun("navapp", requests, refused_alert=navapp[0].public_id),
                     navapp) == 0
    assert unsettled(PartnerRun("navapp", requests), navapp) == 1


def test_requests_after_a_410_are_counted(navapp: list[Expected]) -> None:
    requests = got(navapp, (1, 0.1)) + got(navapp, (2, 10.1), (3, 20.1), status=410)
    f = figures(navapp, requests, gone_from=START + 5)
    assert (f.sent_after_gone, f.should_reach, f.excluded) == (1, 0, 1)


def test_after_a_broker_outage_recovery_counts_the_versions_of_the_outage(
    navapp: list[Expected],
) -> None:
    # the broker was away from +5 s to +22 s: v2 (ts +10 s) and v3 (ts +20 s) came out at +23 s
    late = {2: START + 23.0, 3: START + 23.0}
    produced = [replace(p, at=late.get(p.event.version, p.at)) for p in PRODUCED]
    expected = [replace(e, produced_at=late.get(e.version, e.produced_at)) for e in navapp]
    requests = got(expected, (1, 0.1), (2, 23.2), (3, 24.5), (4, 30.1))
    f = score(PartnerRun("navapp", requests, recovered_at=START + 22.0), expected,
              histories(produced))
    assert (f.live_at_recovery, f.recover_s, f.lost, f.superseded) == (1, 2.5, 0, 0)


def test_an_alert_begun_and_ended_inside_the_outage_and_never_received_is_not_owed(
    navapp: list[Expected],
) -> None:
    outage = ((START - 5, START + 40),)
    unseen = figures(navapp, got(navapp, (1, 0.1), (4, 30.1), status=503), unhealthy=outage)
    assert (unseen.should_reach, unseen.ended_unseen, unseen.lost) == (0, 1, 0)
    # the partner got the create before the outage: its cancel is owed, however long it lasts
    known = figures(navapp, got(navapp, (1, 0.1)) + got(navapp, (4, 30.1), status=503),
                    unhealthy=((START + 1, START + 40),))
    assert (known.should_reach, known.ended_unseen, known.lost_final) == (1, 0, 1)
    # healthy for part of its life: it should have reached the partner, so it is not left out
    healthy = figures(navapp, [], unhealthy=((START + 20, START + 40),))
    assert (healthy.should_reach, healthy.ended_unseen, healthy.lost) == (1, 0, 1)


def test_a_throttled_update_is_not_owed(tmp_path) -> None:
    """navapp's minimum update interval throttles an update 0.5 s after the create: fan-out
    passes it on only to replace the create if it still waits, so the partner is not owed it."""
    from datetime import timedelta

    path = tmp_path / "partners.toml"
    partners_file(path, dict.fromkeys(("navapp", "mapco", "county"), "http://127.0.0.1:1"))
    partners = PartnerSet.from_config(load_partners(path, env={}, allow_dev_defaults=True))
    create = alert("create", 1)
    soon = alert("update", 2, at=create.ts + timedelta(seconds=0.5))
    produced = [Produced(ev, ev.ts.timestamp() + 0.01, 1) for ev in (create, soon)]
    navapp = expected_deliveries(produced, partners)["navapp"]
    assert [e.version for e in navapp] == [1]
    assert partners.partners["navapp"].min_update_interval_s > 0.5


def test_an_alert_the_engine_starts_again_is_scored_per_life(tmp_path) -> None:
    """A create after the cancel under the same alert id (a unit stale-cancelled while Kafka
    was away, then its buffered fixes: `kafka_restart`) is a new life with its own
    partner-facing id: each life's cancel is its own final. Scored as one alert, the second
    life's cancel was looked for under the first life's id and counted lost."""
    from datetime import timedelta

    path = tmp_path / "partners.toml"
    partners_file(path, dict.fromkeys(("navapp", "mapco", "county"), "http://127.0.0.1:1"))
    partners = PartnerSet.from_config(load_partners(path, env={}, allow_dev_defaults=True))
    first = [alert("create", 1), alert("cancel", 2)]
    again = alert("create", 3).ts + timedelta(seconds=5)
    second = [alert("create", 3, at=again, started_at=again, first_version=3),
              alert("cancel", 4, at=again + timedelta(seconds=10), started_at=again,
                    first_version=3)]
    produced = [Produced(ev, ev.ts.timestamp() + 0.01, 1) for ev in (*first, *second)]
    expected = expected_deliveries(produced, partners)["navapp"]
    assert len({e.public_id for e in expected}) == 2  # two lives, two ids
    # the version as the partner has it: its webhook-id's (tests.faults.partners), counted
    # from 1 in each life under a pseudonym (docs/privacy.md, item 4)
    requests = [Request(at=e.produced_at + 0.05, answered_at=e.produced_at + 0.05,
                        webhook_id=e.message_id, alert=e.public_id,
                        version=int(e.message_id.rsplit("-v", 1)[1]),
                        action=e.action, status=200) for e in expected]
    assert [r.version for r in requests] == [1, 2, 1, 2]
    f = score(PartnerRun("navapp", requests), expected, histories(produced))
    assert (f.should_reach, f.delivered_current, f.lost, f.unexpected,
            f.superseded, f.out_of_order) == (2, 2, 0, 0, 0, 0)
    no_second_cancel = score(PartnerRun("navapp", requests[:-1]), expected,
                             histories(produced))
    assert (no_second_cancel.lost, no_second_cancel.lost_final) == (1, 1)
    # the runner waits for each life's cancel, not only the last life's
    no_first_cancel = [r for r in requests if r.webhook_id != expected[1].message_id]
    assert unsettled(PartnerRun("navapp", no_first_cancel), expected) == 1
    assert unsettled(PartnerRun("navapp", requests), expected) == 0
    # the first life's cancel accepted after the second life's create was produced: needed
    # (a later life's create does not supersede it), so not counted superseded
    late = [msgspec.structs.replace(r, at=expected[2].produced_at + 5.0,
                                   answered_at=expected[2].produced_at + 5.0)
            if r.webhook_id == expected[1].message_id else r for r in requests]
    late.sort(key=lambda r: r.at)
    f = score(PartnerRun("navapp", late), expected, histories(produced))
    assert (f.superseded, f.lost) == (0, 0)


def test_examples_name_a_second_lifes_messages_as_the_partner_has_them(tmp_path) -> None:
    """A re-created life (the engine's v3, v4, v5) reaches navapp as ``P-v1`` .. ``P-v3``: the
    examples of its figures name those webhook-ids, never the engine's number under the
    pseudonym (``P-v3`` is no message of it) nor a mix (``P-v1 after v4``)."""
    from datetime import timedelta

    path = tmp_path / "partners.toml"
    partners_file(path, dict.fromkeys(("navapp", "mapco", "county"), "http://127.0.0.1:1"))
    partners = PartnerSet.from_config(load_partners(path, env={}, allow_dev_defaults=True))
    again = alert("create", 3).ts + timedelta(seconds=5)
    life = [alert("create", 3, at=again, started_at=again, first_version=3),
            alert("update", 4, at=again + timedelta(seconds=10), started_at=again,
                  first_version=3),
            alert("cancel", 5, at=again + timedelta(seconds=20), started_at=again,
                  first_version=3)]
    produced = [Produced(ev, ev.ts.timestamp() + 0.01, 1) for ev in life]
    expected = expected_deliveries(produced, partners)["navapp"]
    create, update, _ = expected
    assert [e.message_id.rsplit("-v", 1)[1] for e in expected] == ["1", "2", "3"]

    def request(e: Expected, at: float) -> Request:  # as tests.faults.partners reads it
        return Request(at=at, answered_at=at, webhook_id=e.message_id, alert=e.public_id,
                       version=e.partner_version, action=e.action, status=200)

    swapped = [request(update, update.produced_at + 0.1), request(create, update.produced_at + 0.2)]
    f = score(PartnerRun("navapp", swapped), expected, histories(produced))
    assert f.examples["out_of_order"] == [f"{create.message_id} after {update.message_id}"]
    h = update.ts + 1.0  # the update is the version to be current at h, the cancel not yet
    never = score(PartnerRun("navapp", [request(create, create.produced_at + 0.1)],
                             recovered_at=h), expected, histories(produced))
    assert never.examples["never_current"] == [update.message_id]
