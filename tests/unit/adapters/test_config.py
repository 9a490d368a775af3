"""Partner configuration: the sample loads; mistakes are named by partner and field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from adapters.config import PartnersConfig, dev_secret, dev_secrets_check
from adapters.partners_file import (
    PartnerConfigError,
    load_partners,
    parse_partners,
)
from tests.unit.adapters.factory import SAMPLE


def sample_data() -> dict:
    return tomllib.loads(SAMPLE.read_text())


def test_the_sample_has_the_four_kinds_of_partner() -> None:
    config = load_partners(SAMPLE, env={}, allow_dev_defaults=True)
    formats = {p.id: p.format for p in config.partners}
    assert formats == {"navapp": "webhook", "waze": "waze_cifs", "county": "cap",
                       "opendata": "geojson"}
    charlotte = (-80.8431, 35.2271)
    import shapely

    assert all(p.coverage.contains(shapely.Point(*charlotte)) for p in config.partners)


def test_secrets_come_from_env_first_and_never_show_in_repr() -> None:
    secret = dev_secret("x", "webhook secret")
    config = load_partners(SAMPLE, env={"NAVAPP_WEBHOOK_SECRET": secret}, allow_dev_defaults=True)
    navapp = config.by_id()["navapp"]
    assert navapp.secret is not None and navapp.secret.reveal() == secret
    assert navapp.secret.source == "env:NAVAPP_WEBHOOK_SECRET"
    assert secret not in repr(navapp) and secret not in str(navapp.secret)


def test_a_next_secret_signs_beside_the_secret_until_it_replaces_it() -> None:
    old, new = dev_secret("old", "webhook secret"), dev_secret("new", "webhook secret")
    data = sample_data()
    data["partner"][0]["next_secret"] = {"env": "NAVAPP_NEXT_SECRET"}
    env = {"NAVAPP_WEBHOOK_SECRET": old, "NAVAPP_NEXT_SECRET": new}
    navapp = parse_partners(data, env=env, allow_dev_defaults=True).by_id()["navapp"]
    assert navapp.signing_secrets() == [old, new]
    assert new not in repr(navapp)
    with pytest.raises(PartnerConfigError, match=r"partner 'navapp': next_secret: not found"):
        parse_partners(data, env={"NAVAPP_WEBHOOK_SECRET": old}, allow_dev_defaults=True)
    data["partner"][0]["next_secret"] = "whsec_literal"
    with pytest.raises(PartnerConfigError, match="never a literal secret"):
        parse_partners(data, env=env, allow_dev_defaults=True)
    data["partner"][0]["next_secret"] = {"env": "SHORT"}
    with pytest.raises(PartnerConfigError, match=r"next_secret: want whsec_"):
        parse_partners(data, env={**env, "SHORT": "whsec_abc"}, allow_dev_defaults=True)
    without = sample_data()
    assert load_partners(SAMPLE, env={}, allow_dev_defaults=True).by_id()[
        "navapp"].signing_secrets() == [parse_partners(without, env={}, allow_dev_defaults=True)
                                        .by_id()["navapp"].secret.reveal()]  # fmt: skip


def test_without_env_and_without_dev_defaults_loading_fails_naming_the_field() -> None:
    with pytest.raises(PartnerConfigError, match=r"pseudonym_key: not found"):
        load_partners(SAMPLE, env={})
    env = {"BROKER_PSEUDONYM_KEY": "k" * 32}
    with pytest.raises(PartnerConfigError, match=r"partner 'navapp': secret: not found"):
        load_partners(SAMPLE, env=env)


def test_a_literal_secret_is_refused() -> None:
    data = sample_data()
    data["partner"][0]["secret"] = "whsec_literal"
    with pytest.raises(PartnerConfigError, match="never a literal secret"):
        parse_partners(data, env={}, allow_dev_defaults=True)


def test_a_secret_file_inside_the_repo_is_refused() -> None:
    data = sample_data()
    data["partner"][0]["secret"] = {"file": str(SAMPLE)}
    with pytest.raises(PartnerConfigError, match="outside the repository"):
        parse_partners(data, env={}, allow_dev_defaults=True)


@pytest.mark.parametrize("mark", ["", "\ufeff"])  # Notepad starts a UTF-8 file with a BOM
def test_a_secret_file_outside_the_repo_is_read(tmp_path: Path, mark: str) -> None:
    secret = dev_secret("file", "webhook secret")
    (tmp_path / "navapp.secret").write_text(mark + secret + "\n", encoding="utf-8")
    data = sample_data()
    data["partner"][0]["secret"] = {"file": str(tmp_path / "navapp.secret")}
    config = parse_partners(data, env={}, allow_dev_defaults=True)
    assert config.by_id()["navapp"].secret.reveal() == secret


def test_files_that_are_not_utf8_text_are_refused_naming_them(tmp_path: Path) -> None:
    """A partners file or a secret file in raw bytes (a key from /dev/urandom) raised
    UnicodeDecodeError out of the loader: a traceback, not an error naming the file."""
    raw = bytes(range(128, 192))
    (tmp_path / "partners.toml").write_bytes(raw)
    with pytest.raises(PartnerConfigError, match=r"partners\.toml: not UTF-8 text"):
        load_partners(tmp_path / "partners.toml", env={})
    (tmp_path / "navapp.key").write_bytes(raw)
    data = sample_data()
    data["partner"][0]["secret"] = {"file": str(tmp_path / "navapp.key")}
    with pytest.raises(PartnerConfigError, match=r"navapp\.key is not a readable text file"):
        parse_partners(data, env={}, allow_dev_defaults=True)


@pytest.mark.parametrize(
    ("index", "change", "message"),
    [
        (0, {"policy": {"fields": ["vehicle_id"]}}, "navigation partner may not get"),
        (0, {"policy": {"fields": ["incident_id"]}}, "navigation partner may not get"),
        (3, {"policy": {"fields": [], "coordinate_decimals": 6}}, "open data needs <= 4"),
        (0, {"format": "fax"}, "partner 'navapp': format"),
        (0, {"coverage": {"bbox": [-80.5, 35.0, -81.0, 35.5]}}, "coverage"),
        (0, {"push_url": "http://partner.example.com/hook"}, "plain http only to loopback"),
        (0, {"min_update_interval_s": -1}, "min_update_interval_s"),
        (1, {"cifs_subtype": "HAZARD_ON_MARS"}, "cifs_subtype"),
        (1, {"push_url": "https://waze.example.com/"}, "Waze pulls"),
        (0, {"colour": "red"}, "unknown keys"),
    ],
)
def test_mistakes_name_the_partner_and_field(index, change, message) -> None:
    data = sample_data()
    data["partner"][index].update(change)
    with pytest.raises(PartnerConfigError, match=message):
        parse_partners(data, env={}, allow_dev_defaults=True)


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        (["alert_id"], "['incident_id', 'vehicle_id']"),
        (["alert_id", "vehicle_id"], "['incident_id']"),
        (["alert_id", "incident_id"], "['vehicle_id']"),
        (["alert_id", "vehicle_id", "incident_id"], None),
        (["vehicle_id"], None),
    ],
)
def test_the_raw_alert_id_only_goes_with_the_vehicle_and_incident_it_reveals(
    fields, refused
) -> None:
    """The engine's id is an unkeyed hash of (vehicle, incident, kind): a partner given it can
    find the vehicle again by trying a fleet list, so it must be a partner that gets both."""
    data = sample_data()
    agency = next(p for p in data["partner"] if p["category"] == "public_agency")
    agency["policy"]["fields"] = fields
    if refused is None:
        parse_partners(data, env={}, allow_dev_defaults=True)
        return
    with pytest.raises(PartnerConfigError, match=rf"the raw alert_id reveals \{refused[:-1]}\]"):
        parse_partners(data, env={}, allow_dev_defaults=True)


@pytest.mark.parametrize(
    ("index", "decimals", "refused"),
    [
        (3, 3, "partner 'opendata': policy.fields: 'street' names the road .*\\(open data;"),
        (3, 4, "leave street out$"),  # open data: no finer rounding allowed, so no "or"
        (0, 4, "\\(coordinate_decimals = 4;.*leave street out, or give >= 5 decimals"),
        (1, 0, "coordinate_decimals = 0"),
        (0, 5, None),
        (2, None, None),  # the county: unrounded
    ],
)
def test_a_coarse_partner_may_not_get_the_street(index, decimals, refused) -> None:
    """The road's name says which street crosses a coarse partner's ~100 m cell: more than its
    grid cells tell (docs/privacy.md); until 2026-12-07 the loader let it through."""
    data = sample_data()
    policy = data["partner"][index].setdefault("policy", {})
    policy["fields"] = [*policy.get("fields", []), "street"]
    policy.pop("coordinate_decimals", None)
    if decimals is not None:
        policy["coordinate_decimals"] = decimals
    if refused is None:
        parse_partners(data, env={}, allow_dev_defaults=True)
        return
    with pytest.raises(PartnerConfigError, match=refused):
        parse_partners(data, env={}, allow_dev_defaults=True)


def test_duplicate_ids_are_refused() -> None:
    data = sample_data()
    data["partner"].append(dict(data["partner"][0]))
    with pytest.raises(PartnerConfigError, match="used twice"):
        parse_partners(data, env={}, allow_dev_defaults=True)



def test_a_non_integer_coordinate_decimals_is_named_not_crashed() -> None:
    data = sample_data()
    opendata = next(p for p in data["partner"] if p["id"] == "opendata")
    opendata["policy"]["coordinate_decimals"] = "3"
    with pytest.raises(PartnerConfigError, match=r"'opendata'.*coordinate_decimals: want a whole"):
        parse_partners(data, env={}, allow_dev_defaults=True)


def test_a_secret_with_a_stray_character_is_refused() -> None:
    good = dev_secret("navapp", "webhook secret")
    body = good.removeprefix("whsec_")
    bad = "whsec_" + body[:10] + "!" + body[10:]  # '!' is not base64: must not be dropped
    with pytest.raises(PartnerConfigError, match=r"'navapp': secret: want whsec_"):
        load_partners(SAMPLE, env={"NAVAPP_WEBHOOK_SECRET": bad}, allow_dev_defaults=True)
    # a non-ASCII character: base64 raised a bare ValueError, a traceback (a review, 2026-12-08)
    accented = "whsec_" + body[:10] + "\u00e9" + body[10:]
    with pytest.raises(PartnerConfigError, match=r"'navapp': secret: want whsec_"):
        load_partners(SAMPLE, env={"NAVAPP_WEBHOOK_SECRET": accented}, allow_dev_defaults=True)
    assert load_partners(SAMPLE, env={"NAVAPP_WEBHOOK_SECRET": good}, allow_dev_defaults=True)


@pytest.mark.parametrize(
    ("index", "change", "message"),
    [
        (0, {"coverage": {"bbox": ["west", 35.0, -80.0, 35.5]}},
         "partner 'navapp': coverage.bbox[0]: want a number, got 'west'"),
        (0, {"kinds": ["approaching", "parked"]},
         "partner 'navapp': kinds[1]: want one of approaching, on_scene, got 'parked'"),
        (0, {"policy": {"fields": "unit_type"}},
         "partner 'navapp': policy.fields: want a list, got 'unit_type'"),
        (0, {"timeout_s": "5"}, "partner 'navapp': timeout_s: want a number, got '5'"),
        (0, {"max_in_flight": 0},
         "partner 'navapp': max_in_flight: want a whole number >= 1, got 0"),
        (0, {"feed": "yes"}, "partner 'navapp': feed: want true or false, got 'yes'"),
        (0, {"timout_s": 3},
         "partner 'navapp': unknown keys ['timout_s'] (did you mean 'timeout_s'?)"),
        (0, {"coverage": {"circle": 3}},
         "partner 'navapp': coverage: unknown keys ['circle'] (known: bbox, geojson, polygon)"),
        (0, {"secret": {"file": "navapp.secret"}},
         "partner 'navapp': secret.file: must be an absolute path"),
        (1, {"id": "bad id"}, "partner 'bad id': id: must be ASCII letters, digits, '-' or '_'"),
        # str.isalnum() took these: ids name metric labels, audit records and /feeds/<id>
        (0, {"id": "nävapp"}, "partner 'nävapp': id: must be ASCII letters, digits, '-' or '_'"),
        (0, {"id": "nav٣"}, "partner 'nav٣': id: must be ASCII letters, digits, '-' or '_'"),
        # urlsplit checks a port only when asked: these loaded, and every push failed
        (0, {"push_url": "https://x.example:99999/hook"},
         "partner 'navapp': push_url: port '99999': want 1 to 65535"),
        (0, {"push_url": "https://x.example:0/hook"},
         "partner 'navapp': push_url: port '0': want 1 to 65535"),
        (0, {"push_url": "http://127.0.0.1:80a/hook"},
         "partner 'navapp': push_url: port '80a': want 1 to 65535"),
        (0, {"push_url": "http://[::1]:65536/hook"},
         "partner 'navapp': push_url: port '65536': want 1 to 65535"),
    ],
)
def test_a_wrong_value_deep_in_a_table_names_partner_field_and_value(index, change, message):
    data = sample_data()
    data["partner"][index].update(change)
    with pytest.raises(PartnerConfigError) as err:
        parse_partners(data, env={}, allow_dev_defaults=True)
    assert str(err.value) == message


def test_push_urls_with_a_valid_port_or_none_load() -> None:
    data = sample_data()
    for url in ("http://127.0.0.1:65535/hook", "http://[::1]:1/hook", "https://x.example/hook",
                "https://x.example:/hook"):
        data["partner"][0]["push_url"] = url
        config = parse_partners(data, env={}, allow_dev_defaults=True)
        assert config.partners[0].push_url == url


@pytest.mark.parametrize(
    ("sender", "message"),
    [
        ("", "[broker]: cap_sender: empty: want e.g. alerts@your-domain (CAP 1.2 sender)"),
        ("alerts\t@x.example", "[broker]: cap_sender: 'alerts\\t@x.example' holds '\\t': no "
         "whitespace, control characters, commas, '<' or '&' (CAP 1.2 sender)"),
        ("alerts@x.example\n", "[broker]: cap_sender: 'alerts@x.example\\n' holds '\\n': no "
         "whitespace, control characters, commas, '<' or '&' (CAP 1.2 sender)"),
        ("alerts\u00a0@x.example", "holds '\\xa0'"),
        ("alerts @x.example", "holds ' '"),
        ("alerts,ops@x.example", "holds ','"),
    ],
)
def test_a_cap_sender_cap_1_2_forbids_is_refused(sender: str, message: str) -> None:
    """An empty sender, or one with a tab or newline, loaded (only ' ,<&' were checked)."""
    data = sample_data()
    data["broker"]["cap_sender"] = sender
    with pytest.raises(PartnerConfigError) as err:
        parse_partners(data, env={}, allow_dev_defaults=True)
    assert message in str(err.value)


def test_a_partner_without_an_id_or_a_required_key_is_named_by_position() -> None:
    data = sample_data()
    del data["partner"][1]["id"]
    with pytest.raises(PartnerConfigError, match=r"^partner #2: id: missing$"):
        parse_partners(data, env={}, allow_dev_defaults=True)
    data = sample_data()
    del data["partner"][2]["coverage"]
    with pytest.raises(PartnerConfigError, match=r"^partner 'county': coverage: missing$"):
        parse_partners(data, env={}, allow_dev_defaults=True)


def test_a_malformed_secret_is_named_but_never_shown() -> None:
    data = sample_data()
    data["partner"][0]["secret"] = ["whsec_c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0"]
    with pytest.raises(PartnerConfigError) as err:
        parse_partners(data, env={}, allow_dev_defaults=True)
    assert str(err.value) == "partner 'navapp': secret: must be a table with 'env' or 'file'"
    data["partner"][0]["secret"] = {"env": "X", "value": "whsec_c2VjcmV0IHNlY3JldA"}
    with pytest.raises(PartnerConfigError, match=r"secret: unknown keys \['value'\]") as err:
        parse_partners(data, env={}, allow_dev_defaults=True)
    assert "whsec_" not in str(err.value)
    data["partner"][0]["secret"] = {"env": 5}
    with pytest.raises(PartnerConfigError) as err:
        parse_partners(data, env={}, allow_dev_defaults=True)
    assert str(err.value) == "partner 'navapp': secret.env: want text"


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "partners.toml"
    bad.write_text(SAMPLE.read_text().replace('format = "cap"', 'format = "fax"'))
    with pytest.raises(PartnerConfigError) as err:
        load_partners(bad, env={}, allow_dev_defaults=True)
    assert str(err.value) == (
        f"{bad}: partner 'county': format: want one of cap, geojson, waze_cifs, webhook, got 'fax'"
    )
    bad.write_text("[broker]\npseudonym_key = { env = 'K' }\n")
    with pytest.raises(PartnerConfigError, match=rf"^{bad}: no \[\[partner\]\] entries$"):
        load_partners(bad, env={"K": "k"})


@pytest.mark.parametrize(
    ("table", "typo"), [("partner.policy", "feilds"), ("broker", "cap_sendr")]
)
def test_a_typo_in_a_nested_table_is_refused_not_ignored(table: str, typo: str) -> None:
    header = f"[{table}]"
    text = SAMPLE.read_text().replace(header, f'{header}\n{typo} = "x"', 1)
    with pytest.raises(PartnerConfigError, match=typo):
        parse_partners(tomllib.loads(text), env={}, allow_dev_defaults=True)


def test_short_feed_tokens_and_pseudonym_keys_are_refused() -> None:
    data = tomllib.loads(SAMPLE.read_text())
    env = {"WAZE_FEED_TOKEN": "short-token", "BROKER_PSEUDONYM_KEY": "k" * 40}
    with pytest.raises(PartnerConfigError, match=r"partner 'waze'.*feed_token: too short \(11"):
        parse_partners(data, env=env, allow_dev_defaults=True)
    env = {"BROKER_PSEUDONYM_KEY": "only-sixteen-chr"}
    with pytest.raises(PartnerConfigError, match=r"pseudonym_key: too short \(16 characters"):
        parse_partners(data, env=env, allow_dev_defaults=True)
    message = ""
    try:
        parse_partners(data, env={"BROKER_PSEUDONYM_KEY": "only-sixteen-chr"},
                       allow_dev_defaults=True)
    except PartnerConfigError as err:
        message = str(err)
    assert "only-sixteen-chr" not in message  # the secret itself is never shown


def test_dev_secrets_only_where_everything_is_loopback() -> None:
    dev = parse_partners(tomllib.loads(SAMPLE.read_text()), env={}, allow_dev_defaults=True)
    problem, warning = dev_secrets_check(dev, ["127.0.0.1"])
    assert problem == "" and "DEVELOPMENT SECRETS IN USE" in warning
    problem, _ = dev_secrets_check(dev, ["0.0.0.0"])
    assert "non-loopback" in problem and "0.0.0.0" in problem
    exposed = SAMPLE.read_text().replace("http://127.0.0.1:8088", "https://partner.example.org")
    problem, _ = dev_secrets_check(parse_partners(tomllib.loads(exposed), env={},
                                                  allow_dev_defaults=True), ["127.0.0.1"])
    assert "https://partner.example.org" in problem
    real = {name: f"{name}-{'x' * 40}" for name in (
        "WAZE_FEED_TOKEN", "COUNTY_FEED_TOKEN", "OPENDATA_FEED_TOKEN", "BROKER_PSEUDONYM_KEY")}
    real |= {name: dev_secret(name, "webhook secret") for name in (
        "NAVAPP_WEBHOOK_SECRET", "COUNTY_WEBHOOK_SECRET")}  # right shape, from the environment
    prod = parse_partners(tomllib.loads(exposed), env=real)
    assert dev_secrets_check(prod, ["0.0.0.0"]) == ("", "")


def _loaded_with(
    partner_id: str, field: str, value: object, source: str | None = None
) -> PartnersConfig:
    """The sample partners file with one partner's ``field`` set to ``value``, loaded."""
    data = sample_data()
    next(p for p in data["partner"] if p["id"] == partner_id)[field] = value
    return parse_partners(data, env={}, allow_dev_defaults=True, source=source)


@pytest.mark.parametrize(("grace", "ok"), [(0, True), (600, True), (3600, True), (-1, False),
                                           (3601, False), ("10m", False)])
def test_the_cifs_end_grace_is_a_bounded_number_of_seconds(grace, ok) -> None:
    if ok:
        config = _loaded_with("waze", "cifs_end_grace_s", grace)
        assert config.by_id()["waze"].cifs_end_grace_s == grace
        return
    with pytest.raises(PartnerConfigError, match=r"partner 'waze'.*cifs_end_grace_s"):
        _loaded_with("waze", "cifs_end_grace_s", grace)


@pytest.mark.parametrize(("grace", "ok"), [(0, True), (300, True), (3600, True), (-1, False),
                                           (3601, False), (float("inf"), False)])
def test_the_cap_feed_expires_grace_is_bounded(grace, ok) -> None:
    if ok:
        loaded = _loaded_with("county", "cap_feed_expires_grace_s", grace)
        assert loaded.by_id()["county"].cap_feed_expires_grace_s == grace
        return
    with pytest.raises(PartnerConfigError, match=r"partner 'county'.*cap_feed_expires_grace_s"):
        _loaded_with("county", "cap_feed_expires_grace_s", grace)


def test_a_coverage_outside_the_service_area_is_refused_suggesting_lon_lat(tmp_path: Path) -> None:
    """``bbox = [34.90, -81.30, 35.60, -80.40]`` (lat/lon swapped) loaded: every value is a
    valid lon or lat, but that partner never got anything (a review). Refused naming the file,
    the partner, both boxes and the order to write."""
    text = SAMPLE.read_text().replace(
        "bbox = [-81.30, 34.90, -80.40, 35.60]", "bbox = [34.90, -81.30, 35.60, -80.40]", 1
    )
    assert text != SAMPLE.read_text()
    path = tmp_path / "partners.toml"
    path.write_text(text)
    county = (-81.06, 35.0, -80.55, 35.52)
    with pytest.raises(PartnerConfigError) as err:
        load_partners(path, env={}, allow_dev_defaults=True, service_area=county)
    said = str(err.value)
    assert f"{path}: partner 'navapp': coverage: [34.9, -81.3, 35.6, -80.4]" in said
    assert "service area [-81.06, 35, -80.55, 35.52]" in said
    assert "bbox = [-81.3, 34.9, -80.4, 35.6]" in said
    # the default service area (the world but the poles) refuses it too: lat -81 is Antarctica
    # inside it, so only a county's area catches this one; one wholly beyond 85 degrees is not
    data = sample_data()
    data["partner"][0]["coverage"] = {"bbox": [-81.0, -89.0, -80.0, -86.0]}
    with pytest.raises(PartnerConfigError, match=r"'navapp': coverage: .* lies more than 10 km"):
        parse_partners(data, env={}, allow_dev_defaults=True)
    # and one that overlaps is fine
    assert load_partners(SAMPLE, env={}, allow_dev_defaults=True, service_area=county)


def test_a_coverage_bordering_the_service_area_is_taken() -> None:
    """A zone reaches beyond its unit's service area (the stretch ahead, the walks upstream): a
    neighbouring county's coverage, sharing only a border or lying a few km off, gets the
    alerts of units near the edge. Refused when it shared no area with the service area (a
    review: 19 of the default incident's 74 alerts touched such a coverage)."""
    area = (-80.8531, 35.2174, -80.834, 35.2325)
    for bbox in ([-80.856, 35.215, -80.8532, 35.235], [-80.95, 35.2, -80.9, 35.25]):
        data = sample_data()
        data["partner"][0]["coverage"] = {"bbox": bbox}
        assert parse_partners(data, env={}, allow_dev_defaults=True, service_area=area)
    data = sample_data()
    data["partner"][0]["coverage"] = {"bbox": [-81.1, 35.2, -81.0, 35.25]}  # ~15 km west
    with pytest.raises(PartnerConfigError, match="lies more than 10 km from the service area"):
        parse_partners(data, env={}, allow_dev_defaults=True, service_area=area)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (" http://127.0.0.1:8088/hooks/navapp", "' http://127.0.0.1:8088/hooks/navapp' holds ' '"),
        ("http://127.0.0.1:8088/hooks/navapp ", "'http://127.0.0.1:8088/hooks/navapp ' holds ' '"),
        ("https://exa mple.com/x", "'https://exa mple.com/x' holds ' '"),
        ("https://example.com/x\t", "holds '\\t'"),
        ("https://example.com/\x00x", "holds '\\x00'"),
        ("https://example.com/\u200bx", "holds '\\u200b'"),
    ],
)
def test_a_push_url_with_whitespace_or_control_characters_is_refused(url: str, shown: str) -> None:
    """A leading space loaded (urlsplit strips it) and httpx then failed every delivery with
    UnsupportedProtocol until it dead-lettered; a trailing one posted to '/navapp%20'; one in
    the host was accepted (a review). Refused naming the partner, the field and the value."""
    data = sample_data()
    data["partner"][0]["push_url"] = url
    with pytest.raises(PartnerConfigError) as err:
        parse_partners(data, env={}, allow_dev_defaults=True)
    assert str(err.value).startswith("partner 'navapp': push_url: ")
    assert shown in str(err.value) and "no whitespace or control characters" in str(err.value)


@pytest.mark.parametrize("key", ["name", "purpose"])
@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_a_blank_name_or_purpose_is_refused_naming_file_partner_and_field(
    tmp_path: Path, key: str, blank: str
) -> None:
    """``purpose = ""`` loaded and the public transparency report printed "Why: " with
    nothing after it (a review)."""
    data = sample_data()
    data["partner"][1][key] = blank
    with pytest.raises(PartnerConfigError) as err:
        parse_partners(data, env={}, allow_dev_defaults=True, source=tmp_path / "p.toml")
    assert str(err.value).startswith(f"{tmp_path / 'p.toml'}: partner 'waze': {key}: empty")


@pytest.mark.parametrize(("keep", "ok"), [(60, True), (900, True), (86400, True), (0, False),
                                          (59, False), (86401, False), (float("inf"), False),
                                          (1e15, False), (float("nan"), False)])
def test_how_long_a_feed_keeps_a_cancel_is_bounded(keep, ok) -> None:
    """Review 2026-12-08 (feeds, item 5): ``inf`` or ``1e15`` loaded, then every feed request
    answered 500 (OverflowError in timedelta) and the prune raised each minute, for every
    partner; 0 loaded, and Waze never saw an item end."""
    if ok:
        config = _loaded_with("waze", "feed_keep_cancelled_s", keep)
        assert config.by_id()["waze"].feed_keep_cancelled_s == keep
        return
    with pytest.raises(PartnerConfigError,
                       match=r"^fixtures/partners.toml: partner 'waze': feed_keep_cancelled_s: "
                             r"want a number (>= 60|<= 86400)"):
        _loaded_with("waze", "feed_keep_cancelled_s", keep, source="fixtures/partners.toml")
