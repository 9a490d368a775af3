"""Before/after of an engine variant on the simulate matrix: events, share warned, lead, bystanders.

    .venv/bin/python -m bench.matrix_diff out/simulate-rule/matrix.json [--variant "(set)"]
    .venv/bin/python -m bench.matrix_diff out/after/matrix.json --base out/before/matrix.json

Reads a matrix written by ``python -m broker.simulate.sweep matrix --set FIELD=VALUE`` (every
row scored with today's engine and with the variant on the same traffic and seeds) and prints,
per row and summed, for the engine with roads and without (and the heading-aware receiver
reading the engine's warning segments, where the matrix scored it): alert messages (today ->
variant), affected drivers warned >= 15 s (share), their median lead, passers warned >= 15 s,
and bystander vehicle-seconds (summed, also as a multiple of the 300 m circle's). The sums
leave out the scenarios held out of tuning (recipe ``held_out``); they get their own sum line.
``--base``: compare two matrices of the same rows and the same traffic instead (a change to the
scorer, which ``--set`` cannot vary), the base file's methods as "today"; rows whose traffic
differs (another circle or limit: a simulator change) are refused, rows in one file only named.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from broker.simulate.scorer import HEADING


def _fmt_share(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def rows(doc: list[dict[str, Any]], variant: str) -> list[str]:
    """Markdown rows, one per (scenario, units, traffic) and engine."""
    out = ["| row | engine | alerts | affected >=15 s | median lead s | passers >=15 s "
           "| bystander veh·s |", "|---|---|---|---|---|---|---|"]
    totals: dict[tuple[str, bool], list[float]] = {}
    for r in doc:
        label = f"{r['scenario']} {r['units']}u {r['traffic']}"
        held = bool(r.get("held_out", False))
        circle = r["methods"]["circle300"]["bystander_vehicle_s"]
        for base, after in (
            ("zones+roads", f"zones+roads {variant}"),
            ("zones", f"zones {variant}"),
            (f"zones+roads{HEADING}", f"zones+roads {variant}{HEADING}"),
        ):
            if after not in r["methods"]:
                continue
            a, b = r["methods"][base], r["methods"][after]
            t = totals.setdefault((base, held), [0, 0, 0, 0, 0, 0, 0, 0, 0])
            t[0] += a["alert_messages"]
            t[1] += b["alert_messages"]
            wa = a["affected"]["warned_15"] or 0.0
            wb = b["affected"]["warned_15"] or 0.0
            n = a["affected"]["count"]
            t[2] += wa * n
            t[3] += wb * n
            t[4] += a["bystander_vehicle_s"]
            t[5] += b["bystander_vehicle_s"]
            t[6] += circle
            passers = a["passers"]["count"]
            t[7] += (a["passers"]["warned_15"] or 0.0) * passers
            t[8] += (b["passers"]["warned_15"] or 0.0) * passers
            out.append(
                f"| {label} | {base} | {a['alert_messages']} -> {b['alert_messages']} | "
                f"{_fmt_share(a['affected']['warned_15'])} -> "
                f"{_fmt_share(b['affected']['warned_15'])} | "
                f"{a['affected']['median_lead_s']} -> {b['affected']['median_lead_s']} | "
                f"{_fmt_share(a['passers']['warned_15'])} -> "
                f"{_fmt_share(b['passers']['warned_15'])} | "
                f"{a['bystander_vehicle_s']:.0f} -> {b['bystander_vehicle_s']:.0f} |"
            )
    for (base, held), t in sorted(totals.items(), key=lambda kv: kv[0][1]):
        what = "held-out rows" if held else "all tuning rows"
        out.append(f"| **{what}** | {base} | {t[0]:.0f} -> {t[1]:.0f} "
                   f"({100 * (1 - t[1] / t[0]):.0f} % fewer) | {t[2]:.0f} -> {t[3]:.0f} drivers "
                   f"| | {t[7]:.0f} -> {t[8]:.0f} passers "
                   f"| {t[4]:.0f} -> {t[5]:.0f} ({t[4] / t[6]:.2f}x -> {t[5] / t[6]:.2f}x "
                   "the circle's) |")
    return out


def paired(
    base: list[dict[str, Any]], after: list[dict[str, Any]], variant: str
) -> list[dict[str, Any]]:
    """The rows of both matrices as one, ``after``'s methods named as a ``--set`` variant's
    (``zones+roads`` -> ``zones+roads (after)``, ``... heading`` likewise); rows in one only
    are left out."""

    def key(r: dict[str, Any]) -> tuple[str, int, str]:
        return r["scenario"], r["units"], r["traffic"]

    found = {key(r): r for r in after}
    out = []
    for r in base:
        other = found.pop(key(r), None)
        if other is None:
            print(f"only in the base: {' '.join(map(str, key(r)))}", file=sys.stderr)
            continue
        for same in ("circle300", "limit"):
            if _traffic_of(r["methods"][same]) != _traffic_of(other["methods"][same]):
                raise ValueError(f"{' '.join(map(str, key(r)))}: the {same} differs between the "
                                 "two matrices (other traffic: --base is for a scorer change)")
        methods = dict(r["methods"])
        for name in ("zones+roads", "zones"):
            for suffix in ("", HEADING):
                if f"{name}{suffix}" in other["methods"]:
                    methods[f"{name} {variant}{suffix}"] = other["methods"][f"{name}{suffix}"]
        out.append({**r, "methods": methods})
    for k in found:
        print(f"only in the matrix: {' '.join(map(str, k))}", file=sys.stderr)
    return out


def _traffic_of(method: dict[str, Any]) -> tuple[Any, ...]:
    """What a method's figures rest on that the scorer does not change: drivers met, passers,
    and (for the circle) its bystander time."""
    return (method["affected"]["count"], method["passers"]["count"],
            method.get("bystander_vehicle_s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("matrix", type=Path)
    parser.add_argument("--variant", default="(set)")
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="another matrix of the same rows: compare it (before) with MATRIX",
    )
    args = parser.parse_args()
    doc = json.loads(args.matrix.read_text())
    if args.base is not None:
        doc = paired(json.loads(args.base.read_text()), doc, args.variant)
    print("\n".join(rows(doc, args.variant)))


if __name__ == "__main__":
    main()
