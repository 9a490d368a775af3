"""The transparency report: categories from policy, counts from the audit log."""

from __future__ import annotations

from dataclasses import replace

from msgspec.structs import replace as struct_replace

from adapters.audit import AuditRecord
from adapters.config import PartnersConfig
from adapters.transparency import build_reports, format_html, format_text
from tests.unit.adapters.factory import CONFIG, T0


def rec(partner: str, alert_id: str, version: int, status: str = "delivered") -> AuditRecord:
    return AuditRecord(at=T0, partner=partner, alert_id=alert_id, version=version,
                       action="update", status=status)  # type: ignore[arg-type]


def test_report_counts_alerts_and_messages_and_names_what_is_withheld() -> None:
    records = [rec("navapp", "a", 1), rec("navapp", "a", 2), rec("navapp", "b", 1),
               rec("navapp", "b", 2, "expired"), rec("waze", "", 0, "feed_served")]
    reports = {r.partner.id: r for r in build_reports(CONFIG, records)}
    nav = reports["navapp"]
    assert (nav.alerts_sent, nav.messages_delivered, nav.statuses["expired"]) == (2, 3, 1)
    assert reports["waze"].feed_requests == 1
    text = format_text(list(reports.values()))
    assert "2 warnings sent in 3 messages" in text
    assert "the identifier of the emergency vehicle" in text.split("What they never receive")[1]
    assert "at most 1 days" in text and "about 100 metres" in text
    # open data's zones are grid squares that cover the warning area (adapters.policy)
    assert "the warning area as squares of about 100 metres (or larger) that cover" in text


def test_a_partner_given_the_path_is_told_it_has_the_vehicles_location() -> None:
    """Waze's policy leaves out ``position`` but gives ``path`` and ``segments``, which begin
    at the vehicle: the report said Waze never receives its location, and it does."""
    reports = {r.partner.id: r for r in build_reports(CONFIG, [])}
    waze, opendata = reports["waze"], reports["opendata"]
    assert "position" not in waze.partner.policy.fields
    location = "the vehicle's current location while it is responding"
    assert location not in waze.withheld
    assert any(s.startswith(location) and "road ahead" in s for s in waze.shares)
    # no position, path or segments, but the area is drawn around the vehicle: never withheld
    assert not any("location" in w for w in opendata.withheld)
    assert any("can place it" in s and "within a few metres" in s for s in opendata.shares)


def test_no_partner_is_told_the_location_is_withheld_the_area_is_drawn_around_it() -> None:
    """A privacy review: a partner given only the zone (or the zone and ``street``) was told
    it never receives the vehicle's current location, while an on-scene zone's centroid is the
    unit to within a metre at fine precision."""
    import shapely
    from shapely.geometry import shape

    from adapters.policy import Policy, view_for
    from broker import engine
    from broker.settings import EngineConfig
    from tests.conftest import fix

    zone_only = Policy(frozenset({"agency"}), None)
    p = fix(0, 123.4, north_m=56.7, status="on_scene", speed_mps=0.0)
    _, (ev,) = engine.step(None, p, now=p.ts, cfg=EngineConfig(dispatch_cover_m=0.0))
    centre = shapely.centroid(shape(view_for(ev, zone_only, key=b"k" * 32).zone))
    assert abs(centre.x - p.lon) * 90_960 < 1.0 and abs(centre.y - p.lat) * 110_950 < 1.0

    county = CONFIG.by_id()["county"]
    partners = (replace(county, id="z", policy=zone_only),
                replace(county, id="s", policy=Policy(frozenset({"street"}), 5)))
    config = PartnersConfig(partners=partners, pseudonym_key=CONFIG.pseudonym_key,
                            cap_sender=CONFIG.cap_sender)
    for r in build_reports(config, []):
        assert not any("location" in w for w in r.withheld), (r.partner.id, r.withheld)
        assert any(s.startswith("where the vehicle is") for s in r.shares), r.partner.id


def test_the_report_says_what_a_dispatch_alert_shares_and_what_it_does_not() -> None:
    """A dispatch alert's zone begins where the dispatched unit (not yet responding) stands:
    the public is told so, and that its location, speed and direction are not sent."""
    text = format_text(build_reports(CONFIG, []))
    shared, never = text.split("What they never receive")[:2]
    assert "just been dispatched" in shared and "begins where the vehicle stands" in shared
    assert "location, speed or direction of any vehicle that is not responding" in never


def test_html_is_escaped() -> None:
    reports = build_reports(CONFIG, [])
    reports[0].partner = reports[0].partner.__class__(
        **{**{f: getattr(reports[0].partner, f) for f in reports[0].partner.__slots__},
           "name": "<script>x</script>"})
    page = format_html(reports)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_command_refuses_a_missing_log_and_counts_past_a_cut_off_line(tmp_path) -> None:
    """No audit log printed "0 warnings sent" and exit 0; a last line cut off by a kill -9
    stopped the report with a DecodeError traceback."""
    from typer.testing import CliRunner

    from adapters.audit import JsonlAudit
    from broker.cli import app

    missing = CliRunner().invoke(app, ["transparency", "--audit", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2 and "no such audit log" in missing.output
    log = tmp_path / "audit.jsonl"
    sink = JsonlAudit(log)
    for r in (rec("navapp", "a", 1), rec("navapp", "a", 2)):
        sink.write(r)
    with log.open("ab") as fh:
        fh.write(b'{"at": "2026-11-25T14:0')  # the writer killed mid-line
    out = CliRunner().invoke(app, ["transparency", "--audit", str(log)])
    assert out.exit_code == 0, out.output
    assert "1 warnings sent in 2 messages" in out.output
    assert "1 lines that are not audit records" in out.output and "line 3" in out.output
    # a file of which no line is an audit record: refused, not a report of zeros
    other = tmp_path / "alerts.ndjson"
    other.write_text('{"action": "create"}\n{"x": 1}\n')
    wrong = CliRunner().invoke(app, ["transparency", "--audit", str(other)])
    assert wrong.exit_code == 2 and "none of its 2 lines is an audit record" in wrong.output


def test_a_pull_partner_is_reported_with_the_warnings_its_feed_showed() -> None:
    """Feed responses carried warnings, but the report told the public Waze was given none
    ("0 warnings sent"): it counted only pushed deliveries."""
    from datetime import timedelta

    from adapters.audit import MemoryAudit
    from adapters.feeds import serve_feed
    from tests.unit.adapters.factory import alert

    audit = MemoryAudit()
    active = [alert("create", 1, alert_id="a:1:on_scene", kind="on_scene"),
              alert("create", 1, alert_id="b:2:approaching")]
    token = CONFIG.by_id()["waze"].feed_token.reveal()
    for s in range(3):
        serve_feed(CONFIG, "waze", f"Bearer {token}", active, T0 + timedelta(seconds=s),
                   audit=audit)
    waze = {r.partner.id: r for r in build_reports(CONFIG, audit.records)}["waze"]
    assert (waze.feed_requests, waze.alerts_served) == (3, 2)
    assert "3 feed requests answered, showing 2 warnings" in format_text([waze])


def sent(alert_id: str, version: int, status: str, *, attempt: int = 1, life: int = 0,
         partner: str = "navapp") -> AuditRecord:
    """A delivery record as delivery writes it: webhook-id, attempt and the alert's life."""
    from datetime import timedelta

    return AuditRecord(at=T0, partner=partner, alert_id=alert_id, version=version,
                       action="update", status=status, attempt=attempt,  # type: ignore[arg-type]
                       message_id=f"{alert_id}-v{version}",
                       started_at=T0 + timedelta(hours=life))


def test_a_message_sent_again_after_a_restart_counts_once() -> None:
    """The same webhook-id delivered twice (the first worker died before settling) counted
    as two messages (item 8)."""
    records = [sent("a", 1, "sending"), sent("a", 1, "delivered"),
               sent("a", 1, "sending"), sent("a", 1, "delivered")]
    nav = {r.partner.id: r for r in build_reports(CONFIG, records)}["navapp"]
    assert (nav.alerts_sent, nav.messages_delivered, nav.messages_uncertain) == (1, 1, 0)


def test_two_lives_of_an_alert_under_one_id_are_two_alerts() -> None:
    """A partner given the engine's id sees the same id (and webhook-id) for a later life:
    without started_at in the record the report merged them (item 8)."""
    records = [sent("CFD-E7:F1:on_scene", 1, "delivered", life=0),
               sent("CFD-E7:F1:on_scene", 1, "delivered", life=5)]
    nav = {r.partner.id: r for r in build_reports(CONFIG, records)}["navapp"]
    assert (nav.alerts_sent, nav.messages_delivered) == (2, 2)


def test_an_attempt_without_an_outcome_may_have_been_received() -> None:
    """A send cut short leaves ``sending`` alone: counted as possibly received, and said so;
    one with its outcome (failed, then delivered by the retry) is not."""
    records = [
        sent("a", 1, "sending"),  # cut short: no outcome
        sent("a", 1, "expired", attempt=0),  # the next owner found it expired (no attempt)
        sent("b", 1, "sending"), sent("b", 1, "failed"),
        sent("b", 1, "sending", attempt=2), sent("b", 1, "delivered", attempt=2),
        sent("c", 1, "sending"), sent("c", 1, "failed"), sent("c", 1, "expired"),
        sent("d", 1, "sending"), sent("d", 1, "failed"),
        sent("d", 1, "sending", attempt=2),  # the retry cut short
    ]
    nav = {r.partner.id: r for r in build_reports(CONFIG, records)}["navapp"]
    assert (nav.messages_delivered, nav.messages_uncertain, nav.alerts_uncertain) == (1, 2, 2)
    assert nav.undelivered == {"expired": 1}  # c only: a may have been received
    text = format_text([nav])
    assert "1 warnings sent in 1 messages" in text
    assert "2 more messages may have been received, about 2 more warnings" in text
    assert "1 messages dropped because the warning had already ended" in text


def test_records_of_the_old_schema_still_count() -> None:
    """Schema 1: no ``sending``, no ``started_at``: counted as before, by message."""
    old = [AuditRecord(at=T0, partner="navapp", alert_id="a", version=v, action="update",
                       status="delivered", attempt=1, message_id=f"a-v{v}") for v in (1, 2, 2)]
    nav = {r.partner.id: r for r in build_reports(CONFIG, old)}["navapp"]
    assert (nav.alerts_sent, nav.messages_delivered, nav.messages_uncertain) == (1, 2, 0)


def test_an_attempt_held_back_after_its_sending_record_is_not_counted_as_cut_short() -> None:
    """``sending`` then ``superseded`` / ``expired`` / ``failed`` marked ``not_sent``: a newer
    version came, the alert expired, the lease lapsed, while the record went to Kafka, and the
    request never went (adapters.delivery_loop). The report told the public a restart or a
    fault had cut these off (an operator review: 4 such messages on a healthy run)."""
    def at(status: str, version: int, attempt: int, **kw: object) -> AuditRecord:
        return AuditRecord(at=T0, partner="navapp", alert_id="a", version=version,
                           action="update", status=status, attempt=attempt,  # type: ignore[arg-type]
                           message_id=f"a-v{version}", **kw)  # type: ignore[arg-type]

    records = [at("sending", 1, 1), at("superseded", 1, 1, not_sent=True),
               at("sending", 2, 1), at("expired", 2, 1, not_sent=True),
               at("sending", 3, 1), at("delivered", 3, 1),
               at("sending", 4, 1), at("expired", 4, 0)]  # cut short: the next owner's record
    nav = {r.partner.id: r for r in build_reports(CONFIG, records)}["navapp"]
    assert (nav.messages_delivered, nav.messages_uncertain) == (1, 1)
    assert nav.undelivered["superseded"] == 1 and nav.undelivered["expired"] == 1


def test_a_send_cut_short_stays_uncertain_whatever_the_next_owner_writes_after_its_own() -> None:
    """Worker A's ``sending`` is cut short (a crash mid-request); worker B counts its attempts
    from 1 again under the same message key: its ``sending``, a 503 (``failed``), then
    ``expired`` (GiveUp, a retry's turn) with the same attempt number. Counting that
    ``expired`` as an outcome hid A's send (a reviewer's case); only ``not_sent`` marks one."""
    records = [sent("a", 1, "sending"),  # A, cut short
               sent("a", 1, "sending"), sent("a", 1, "failed"), sent("a", 1, "expired")]  # B
    nav = {r.partner.id: r for r in build_reports(CONFIG, records)}["navapp"]
    assert nav.messages_uncertain == 1 and nav.undelivered["expired"] == 0


def test_what_a_partner_receives_includes_what_the_log_shows_it_was_sent() -> None:
    """A privacy review: the county was sent ``incident_id`` and ``position``, its policy was
    narrowed since, and the report from that same log told the public it never receives the
    incident number and that the vehicle's coordinates are not sent. What the log shows sent
    is listed as received (said to be no longer shared); "never" only what neither has."""
    from adapters.policy import Policy

    county = CONFIG.by_id()["county"]
    assert {"incident_id", "position"} <= county.policy.fields
    narrowed = replace(county, policy=Policy(
        fields=county.policy.fields - {"incident_id", "position"}))
    config = PartnersConfig(partners=(narrowed,), pseudonym_key=CONFIG.pseudonym_key,
                            cap_sender=CONFIG.cap_sender)
    core = ("alert_id", "version", "action", "kind", "ts", "started_at", "expires_at", "zone")
    logged = [struct_replace(sent("a", 1, "sending", partner="county"),
                      fields=(*core, "incident_id", "agency", "position")),
              struct_replace(sent("a", 1, "delivered", partner="county"),
                      fields=(*core, "incident_id", "agency", "position"))]
    (r,) = build_reports(config, logged)
    text = format_text([r])
    shared, never = text.split("What they never receive")
    assert "the dispatch incident number (sent until 2026-11-25; no longer shared" in shared
    assert "the vehicle's current location while it is responding (sent until" in shared
    assert "the dispatch incident number" not in never
    assert "coordinates themselves are not sent" not in text
    assert "the identifier of the emergency vehicle" in never  # neither policy nor log
    # the log's core ``alert_id`` (a pseudonym) is not the raw-id category
    assert CONFIG_TEXT_RAW_ID not in text
    # a field the policy shares and the log shows is listed once, without the remark
    assert shared.count("the responding agency") == 1 and "agency (sent until" not in shared
    # a record of a message that never went (expired, superseded ...) names no field sent
    (plain,) = build_reports(config, [struct_replace(sent("a", 1, "expired", partner="county"),
                                              fields=(*core, "incident_id"))])
    assert "the dispatch incident number" in format_text([plain]).split("never receive")[1]


CONFIG_TEXT_RAW_ID = "the broker's internal alert identifier"


def test_a_partner_removed_from_the_file_keeps_its_section() -> None:
    """A partner with delivered records, taken out of the partners file, vanished from the
    report built from the log that shows it was sent data (a privacy review)."""
    from datetime import timedelta

    without = PartnersConfig(partners=tuple(p for p in CONFIG.partners if p.id != "navapp"),
                             pseudonym_key=CONFIG.pseudonym_key, cap_sender=CONFIG.cap_sender)
    core = ("alert_id", "version", "action", "kind", "ts", "started_at", "expires_at", "zone")
    records = [struct_replace(sent("a", 1, "sending"), fields=(*core, "position", "speed")),
               struct_replace(sent("a", 1, "delivered"), fields=(*core, "position", "speed"),
                       at=T0 + timedelta(minutes=1)),
               sent("b", 1, "expired", attempt=0),
               rec("gone", "", 0, "feed_denied")]  # a removed partner that got nothing
    text = format_text(build_reports(without, records))
    assert "\nnavapp\n" in text and "\ngone\n" in text
    reports = {r.id: r for r in build_reports(without, records)}
    assert list(reports)[-2:] == ["navapp", "gone"]
    nav = reports["navapp"]
    assert nav.partner is None and (nav.alerts_sent, nav.undelivered["expired"]) == (1, 1)
    section = text.split("\nnavapp\n")[1].split("\n\n")[0]
    assert ("No longer a partner" in section and "between 2026-11-25T14:03:05+00:00 and "
            "2026-11-25T14:04:05+00:00" in section)
    received, never = section.split("What they never received")
    assert "the vehicle's current location while it is responding" in received
    assert "the vehicle's speed while it is responding" in received
    assert "sent until" not in received  # the whole section is what the log shows
    assert "the dispatch incident number" in never
    assert "1 warnings sent in 1 messages" in section
    gone = text.split("\ngone\n")[1]
    assert "shows no data sent to it" in gone and "What they received" not in gone
    page = format_html(list(reports.values()))
    assert "<section id='navapp'>" in page and "No longer a partner" in page


def test_a_failure_without_an_answer_after_the_request_went_may_have_been_received() -> None:
    """A partner that read each body and never answered: ``sending``/``failed`` x3 then
    ``expired`` was reported as "dropped because the warning had already ended" (a privacy
    review). A ``failed`` marked ``may_have_arrived`` is no outcome: possibly received. One
    answered (503 until the end, a 400) reached the partner, which refused it."""
    def failed(alert_id: str, attempt: int, **kw: object) -> AuditRecord:
        return struct_replace(sent(alert_id, 1, "failed", attempt=attempt), **kw)

    records = [r for n in (1, 2, 3) for r in (sent("a", 1, "sending", attempt=n),
                                               failed("a", n, may_have_arrived=True))]
    records += [sent("a", 1, "expired", attempt=3)]
    records += [sent("b", 1, "sending"), failed("b", 1, http_status=503),
                sent("b", 1, "expired")]
    records += [sent("c", 1, "sending"), failed("c", 1, http_status=400),
                sent("c", 1, "dead_letter")]
    records += [sent("d", 1, "sending"), failed("d", 1),  # refused connection: nothing went
                sent("d", 1, "expired")]
    nav = {r.id: r for r in build_reports(CONFIG, records)}["navapp"]
    assert (nav.messages_uncertain, nav.alerts_uncertain) == (1, 1)
    assert nav.undelivered == {"refused": 2, "expired": 1}
    text = format_text([nav])
    assert "1 more messages may have been received, about 1 more warnings" in text
    assert "the partner did not answer in time" in text
    assert "2 messages that reached the partner, which refused them" in text
    assert "1 messages dropped because the warning had already ended" in text


async def test_a_delivery_that_timed_out_after_its_request_went_is_logged_so(tmp_path) -> None:
    """The audit's ``failed`` record says what the delivery knew: the request went and no
    answer came (``Outcome.may_have_arrived``); one whose connection was refused says not."""
    import httpx

    from adapters.attempts import REQUEST_WENT
    from tests.unit.adapters.factory import alert, navapp_deliveries, run_hub

    async def silent(request: httpx.Request) -> httpx.Response:
        await request.extensions["trace"](REQUEST_WENT, {"request": request})
        raise httpx.ReadTimeout("no answer", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    for handler, arrived in ((silent, True), (refused, False)):
        _, records, _, _ = await run_hub(handler, navapp_deliveries(alert("create", 1, ttl_s=20)),
                                         tmp_path / str(arrived))
        failures = [r for r in records if r.status == "failed"]
        assert failures and all(r.may_have_arrived is arrived for r in failures)
        nav = {r.id: r for r in build_reports(CONFIG, records)}["navapp"]
        assert nav.messages_uncertain == int(arrived), handler


def test_two_lives_of_an_alert_a_pull_partner_was_shown_under_one_id_are_two_warnings() -> None:
    """A public agency given the engine's id is shown ``CFD-E7::approaching-v1`` in two lives
    5 h apart (a unit with no incident runs twice): the feed's records named the same message
    id and the report said "showing 1 warnings" (a privacy review). Each record names each
    item's life; a record written before that (no lives) still counts, lives merged."""
    from datetime import timedelta

    from adapters.audit import MemoryAudit
    from adapters.feeds import serve_feed
    from adapters.policy import Policy
    from tests.unit.adapters.factory import alert

    county = CONFIG.by_id()["county"]
    county = replace(county, policy=Policy(fields=county.policy.fields | {"alert_id",
                                                                          "vehicle_id"}))
    config = PartnersConfig(partners=(county,), pseudonym_key=CONFIG.pseudonym_key,
                            cap_sender=CONFIG.cap_sender)
    audit = MemoryAudit()
    later = T0 + timedelta(hours=5)
    for start in (T0, later):
        ev = alert("create", 1, alert_id="CFD-E7::approaching", incident_id=None, at=start,
                   started_at=start)
        serve_feed(config, "county", "Bearer " + county.feed_token.reveal(), [ev],
                   start + timedelta(seconds=1), audit=audit)
        serve_feed(config, "county", "Bearer " + county.feed_token.reveal(), [ev],
                   start + timedelta(seconds=2), audit=audit)
    first, _, third, _ = audit.records
    assert first.served == third.served and first.served_started == (T0,)
    (r,) = build_reports(config, audit.records)
    assert (r.feed_requests, r.alerts_served) == (4, 2)
    assert "4 feed requests answered, showing 2 warnings" in format_text([r])
    old = [struct_replace(x, served_started=()) for x in audit.records]
    assert build_reports(config, old)[0].alerts_served == 1
