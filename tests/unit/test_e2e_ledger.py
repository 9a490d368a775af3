"""The end-to-end bench's ledger (bench/e2e_bench.py): which deliveries it times from a message
the source produced, which from the engine's own clock, and which not at all."""

from __future__ import annotations

import os
from pathlib import Path

from adapters.fanout import PartnerSet
from adapters.partners_file import load_partners
from bench.e2e_bench import partners_file
from bench.e2e_ledger import FanOut, Ledger
from broker import engine
from broker.settings import EngineConfig
from tests.conftest import at, east_route, fix

HELD = EngineConfig(dispatch_hold_s=2.0)


def test_a_held_dispatch_alert_is_timed_apart_from_the_positions(tmp_path: Path) -> None:
    config = load_partners(partners_file(tmp_path, 9), env=dict(os.environ),
                           allow_dev_defaults=True)
    ledger = Ledger()
    fo = FanOut(PartnerSet.from_config(config), None, ledger)
    route, waiting = east_route(), fix(1.0, 0.0, status="dispatched", lights_sirens=False)
    rolling = fix(30.0, 0.0)
    # what the source sent: this unit's messages, and another unit's fix stamped at the very
    # millisecond the held alert falls due (at 500 messages a second, as likely as not)
    vid = route.vehicle_id
    ledger.stamps |= {(vid, route.ts), (vid, waiting.ts), (vid, rolling.ts), ("E99", at(2.0))}
    state, _ = engine.step(None, route, now=route.ts, cfg=HELD)
    state, _ = engine.step(state, waiting, now=waiting.ts, cfg=HELD)
    state, held = engine.tick(state, now=at(3.0), cfg=HELD)  # the dispatch alert, at its due
    state, took_over = engine.step(state, rolling, now=rolling.ts, cfg=HELD)
    fo(held + took_over)
    assert [e.ts for e in held] == [at(2.0)] and [e.ts for e in took_over] == [at(30.0)]
    assert ledger.clock_made_ts and set(ledger.clock_made_ts.values()) == {at(2.0)}
    assert ledger.event_ts and set(ledger.event_ts.values()) == {at(30.0)}
    assert not ledger.clock_made_ts.keys() & ledger.event_ts.keys()
    assert ledger.queued == ledger.clock_made_ts.keys() | ledger.event_ts.keys()  # still owed


def test_the_base_revisions_webhook_ids_are_read_in_this_trees_terms(tmp_path: Path) -> None:
    """The base worker (777fae7) names an alert by a pseudonym of the engine's id alone; this
    tree's adds the alert's start. Matched as they came, every base delivery read as lost
    (`make bench`: 'lost 1236' of 1236 received)."""
    import hashlib

    config = load_partners(partners_file(tmp_path, 9), env=dict(os.environ),
                           allow_dev_defaults=True)
    ledger = Ledger()
    FanOut(PartnerSet.from_config(config), None, ledger)(
        engine.step(None, fix(0.0, 0.0), now=at(0.0), cfg=EngineConfig())[1]
    )
    assert ledger.queued
    for path, mid in ledger.queued:
        partner = next(p for p in config.partners if p.push_url and p.push_url.endswith(path))
        internal, version = ledger.delivery_alert[(path, mid)]
        digest = hashlib.blake2b(internal.encode(), key=config.key_for(partner.id)[:64],
                                 digest_size=8).hexdigest()
        assert ledger.pre_life_ids[(path, f"ev{digest}-v{version}")] == mid


def _base_tree(tmp_path: Path, per_life: bool) -> Path:
    """A checkout whose adapters/policy.py has versions per life or not."""
    (tmp_path / "adapters").mkdir(parents=True)
    (tmp_path / "adapters" / "policy.py").write_text(
        "per_life_versions: bool = True\n" if per_life else "version: int\n")
    return tmp_path


def test_a_base_that_sent_the_engines_versions_under_a_pseudonym_is_credited_right(
    tmp_path: Path
) -> None:
    """A base from 2026-12-05 until versions counted per life names a re-created life (the
    engine's v3 .. v8) ``P-v3`` .. ``P-v8``, this tree ``P-v1`` .. ``P-v6``: read as they came,
    the base's v3 was credited as this tree's v3 (the engine's v5) and its v7, v8 read as lost.
    A base that counts per life sends this tree's ids: read as they came (``P-v3`` is then the
    engine's v5, not v3)."""
    from bench.e2e_ledger import in_this_trees_terms, unanswered
    from tests.unit.adapters.factory import PARTNERS
    from tests.unit.adapters.test_life_versions import LATER, life

    ledger = Ledger()
    FanOut(PARTNERS, None, ledger)(life(3, LATER, 6))
    assert ledger.queued
    base: list[dict[str, str]] = []
    for (path, mid), (_, version) in ledger.delivery_alert.items():
        stem, n = mid.rsplit("-v", 1)
        assert int(n) == version - 2  # this tree: from 1 in the life
        base.append({"path": path, "message_id": f"{stem}-v{version}"})
    rows = [dict(r) for r in base]
    in_this_trees_terms(rows, ledger, _base_tree(tmp_path / "old", per_life=False))
    assert {(r["path"], r["message_id"]) for r in rows} == ledger.queued
    assert not unanswered(ledger.queued, {(r["path"], r["message_id"]) for r in rows})
    ours = [{"path": p, "message_id": m} for p, m in sorted(ledger.queued)]
    rows = [dict(r) for r in ours]
    in_this_trees_terms(rows, ledger, _base_tree(tmp_path / "new", per_life=True))
    assert rows == ours
