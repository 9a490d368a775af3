"""docs/reliability.md from the suite's raw results: a table per scenario, each figure beside
its design goal (design.md "Figures it is built for": faults).

Pure rendering (results dict -> Markdown text): ``python -m tests.faults.report [JSON [MD]]``
rewrites the note from a saved results file.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.faults.partners import CONTROLS, SUBJECT
from tests.faults.scoring import GRACE_S, LIVE_MIN_S, RECOVER_GOAL_S
from tests.worker_process import REPO

PARTNERS = (SUBJECT, *CONTROLS)

Check = Callable[[dict[str, Any]], bool | None]  # None: no goal, or not applicable


@dataclass(frozen=True, slots=True)
class Row:
    """One figure: its key in the results, its label, the goal as text and as a check."""

    key: str
    label: str
    goal: str
    check: Check


def _zero(key: str) -> Check:
    return lambda f: None if f.get(key) is None else f[key] == 0


def _recovered(f: dict[str, Any]) -> bool | None:
    if not f.get("live_at_recovery"):
        return None
    return f.get("recover_s") is not None and f["recover_s"] <= RECOVER_GOAL_S


def _no_goal(_f: dict[str, Any]) -> bool | None:
    return None


ROWS = (
    Row("should_reach", "alerts that should reach the partner", "", _no_goal),
    Row("delivered_current", "delivered current (last version received = the cancel)",
        "all", lambda f: f["delivered_current"] == f["should_reach"]),
    Row("lost", "lost", "0", _zero("lost")),
    Row("out_of_order", "delivered out of order", "0", _zero("out_of_order")),
    Row("superseded", "superseded versions sent", "0 (contract)", _zero("superseded")),
    Row("duplicates", "duplicates (same webhook-id again)", "harmless", _no_goal),
    Row("stale_as_live", "stale alerts sent as live", "0", _zero("stale_as_live")),
    Row("live_at_recovery", "alerts live at H", "", _no_goal),
    Row("recover_s", "time to recover, s (all alerts live at H current)",
        f"<= {RECOVER_GOAL_S:g}", _recovered),
    Row("first_delivery_s", "first delivery after H, s", "", _no_goal),
    Row("sent_after_gone", "requests after the first 410", "0", _zero("sent_after_gone")),
    Row("refused_alert_retries", "the 400'd alert's requests sent again", "0",
        _zero("refused_alert_retries")),
    Row("excluded", "alerts left out (refused by 400, or live at the 410)", "", _no_goal),
    Row("ended_unseen", "alerts begun and ended inside the outage, never received", "",
        _no_goal),
    Row("delay_p50_s", "produced -> accepted, p50, s", "", _no_goal),
    Row("delay_max_s", "produced -> accepted, max, s", "", _no_goal),
    Row("requests", "requests received", "", _no_goal),
    Row("answers", "answers given", "", _no_goal),
)
GOAL_KEYS = ("lost", "out_of_order", "stale_as_live", "recover_s", "delivered_current",
             "superseded", "sent_after_gone", "refused_alert_retries")


def _cell(row: Row, f: dict[str, Any]) -> str:
    value = f.get(row.key)
    if row.key == "recover_s" and value is None:
        value = "never" if f.get("live_at_recovery") else "n/a"
    elif value is None:
        return ""
    if isinstance(value, dict):
        value = ", ".join(f"{k}: {v}" for k, v in value.items())
    ok = row.check(f)
    return f"**{value}** (misses)" if ok is False else str(value)


def misses(result: dict[str, Any]) -> list[str]:
    """'figure (partner)' for every goal a scenario's run missed."""
    out = []
    for row in ROWS:
        if row.key not in GOAL_KEYS:
            continue
        for pid in PARTNERS:
            f = result.get("figures", {}).get(pid)
            if f is not None and row.check(f) is False:
                out.append(f"{row.label.split(' (')[0]} ({pid})")
    return out


def _relative(path: str) -> str:
    """A path under the repository, relative to it (the note is read in the repository)."""
    p = Path(path)
    return str(p.relative_to(REPO)) if p.is_absolute() and p.is_relative_to(REPO) else path


def scenario_section(r: dict[str, Any]) -> list[str]:
    """The Markdown of one scenario: what, when, the table."""
    out = [f"### `{r['name']}`: {r['title']}", ""]
    if r.get("error"):
        return [*out, f"**Error** (the scenario broke; the others ran): `{r['error']}`", ""]
    out += [r["what"], ""]
    if r.get("commit"):  # merged into the suite's results from a run of its own
        out += [f"Run on its own (`{r.get('command')}`, merged): commit `{r['commit']}`, "
                f"{r.get('date')}.", ""]
    timeline = "; ".join(f"{e['at_s']:.0f} s {e['what']}" for e in r.get("timeline", []))
    src = r.get("source", {})
    out += [f"Run: {timeline}. Produced on `alerts`: {r['alerts']} alerts, "
            f"{r['alert_versions']} versions ({r['alert_records']} records). Source: "
            f"{src.get('sent')} messages sent, {src.get('failed')} failed. "
            f"{r['elapsed_s']:.0f} s in all. Logs: `{_relative(r['logs'])}`.", ""]
    out += ["| figure | goal | " + " | ".join(PARTNERS) + " |",
            "|---|---|" + "---:|" * len(PARTNERS)]
    figs = r["figures"]
    for row in ROWS:
        cells = [_cell(row, figs.get(pid, {})) for pid in PARTNERS]
        if any(cells):
            out.append(f"| {row.label} | {row.goal} | " + " | ".join(cells) + " |")
    examples = {pid: f.get("examples") for pid, f in figs.items() if f.get("examples")}
    if examples:
        out += ["", "Examples (webhook-ids): " + "; ".join(
            f"{pid} {k}: {', '.join(v[:3])}" for pid, ex in examples.items()
            for k, v in ex.items())]
    return [*out, ""]


def summary(results: list[dict[str, Any]]) -> list[str]:
    out = ["| scenario | lost | out of order | stale as live | superseded | recover, s "
           f"| goals missed ({' / '.join(PARTNERS)}) |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if r.get("error"):
            out.append(f"| `{r['name']}` | | | | | | **error** |")
            continue
        figs = r["figures"]

        def across(key: str, figs: dict[str, Any] = figs) -> str:
            vals = []
            for pid in PARTNERS:
                v = figs.get(pid, {}).get(key)
                if key == "recover_s" and v is None:
                    v = "never" if figs.get(pid, {}).get("live_at_recovery") else "-"
                vals.append(str(v))
            return " / ".join(vals)

        missed = misses(r)
        out.append(f"| `{r['name']}` | {across('lost')} | {across('out_of_order')} | "
                   f"{across('stale_as_live')} | {across('superseded')} | "
                   f"{across('recover_s')} | {', '.join(missed) or 'none'} |")
    return out


HOW = f"""## How to run

```sh
make faults                                   # every scenario, ~25 min on 2 cores; writes this file
.venv/bin/python -m tests.faults --only partner_down --only worker_kill9   # some (to out/faults/)
.venv/bin/python -m tests.faults --quick      # 10 s faults, ~1 min of traffic each
.venv/bin/python -m tests.faults --merge --only worker_freeze   # one again, merged into this file
.venv/bin/python -m tests.faults.report       # this file again from tests/faults/results.json
```

The suite starts its own Kafka (`scripts/kafka` on `FAULTS_KAFKA_PORT`, 25092, with its own
run directory `out/faults/kafka/`, so the Kafka scenario can stop and restart it with its data)
unless `--bootstrap HOST:PORT` names one (then `kafka_restart` is an error). The port is below
Linux's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 here) on
purpose: while the broker is down, clients reconnecting to a port inside that range soon
connect to themselves (the kernel hands out the broker's own port as their source port; here
after ~800 attempts), and the restarted broker then cannot bind it. A scenario that breaks is
recorded as an error and the others still run. Per scenario, `out/faults/<scenario>/` keeps
every partner's request log (`partner-<id>.jsonl`), the workers' logs and audit files.
`make test` runs a short subset (`tests/integration/test_faults_quick.py`: a 10 s outage and a
kill -9) asserting 0 lost, 0 out of order, 0 stale as live.

## What runs

- **Traffic** (`tests/faults/traffic.py`): 16 synthetic units, each fixing about once a second
  with the wall clock as event time, in cycles of available -> dispatched (a CAD route on
  `cad.routes`) -> responding along it with lights and sirens -> on scene -> available; in the
  last 15 s they are called off one by one. So every alert gets a create, (mostly) updates and
  a cancel within the run, and 10-16 alerts are live at once. The plan is a function of the
  seed (`--seed`, 14).
- **The broker**: real worker processes (`python -m broker.streams.cli worker`) on the real
  Kafka, with `BROKER_PARTNERS` pointing at a partners file whose three push partners are the
  doubles below (`BROKER_ALLOW_DEV_SECRETS=true`, everything on 127.0.0.1; client timeout 10 s).
- **Partners** (`tests/faults/partners.py`): real HTTP servers on 127.0.0.1, subclasses of the
  sample partner (`broker.sink`: every signature verified with `standardwebhooks`), scripted by
  time: `navapp` (webhook, min update interval 2 s) is the one partner faults are applied to;
  `mapco` (webhook, same settings) and `county` (CAP 1.2, 10 s) stay healthy beside it. Each
  keeps every request: arrival time, webhook-id, alert id, version, action, the answer.

## How each figure is computed (`tests/faults/scoring.py`)

Expected = `adapters.fanout.fan_out` (what the worker runs) over the alert versions actually
produced on the run's `alerts` topic, read back from Kafka, each version once (a re-emitted
one counts at its first Kafka timestamp). So the expectation depends on neither timing nor the
delivery code. *Accepted* = answered 2xx by the partner; arrival at the partner stands for
"sent" (loopback). H = the moment the partner or the broker is healthy again: the partner
listens again / its 503 or 429 window ends (or the last `Retry-After` it gave runs out, if
later); the restarted worker is the consumer group's one member and owns every partition (and
its `/health` says ready, where it serves one); the group is stable with the joining worker /
with the one left; Kafka answers again; the hostile burst is in Kafka. Readiness is read from
the consumer group in Kafka, not from the worker's web surface. After the traffic the suite
waits (up to 3 min) until the group has committed all the input, then (up to 40 s, while
anything is still produced or sent) until every partner has every final version.

- **alerts that should reach the partner**: alerts fan-out gives it (each life on its own: an
  alert the engine starts again after its cancel has a new partner-facing id), less *alerts
  left out*: the alert it refuses with 400, and alerts still live when it starts answering
  410; and less the alerts that began and ended while it was down (live under {LIVE_MIN_S:g} s
  while it took work) and of which it accepted nothing: nothing of them is at the partner to
  update or cancel, and the contract sends a cancel only to a partner that got the alert. A
  cancel of an alert it did get is retried until it is accepted, however long the outage.
- **delivered current**: alerts whose last accepted version is their final one (the cancel).
- **lost**: the final version was never accepted, or the alert was live (from the event time
  of its create to that of its cancel) for {LIVE_MIN_S:g} s or more while the partner took
  work and the broker was up (a killed or stopped worker until it serves again, Kafka
  stopped until it answers, count as down), and no live version of it was accepted while it
  was live.
- **delivered out of order**: accepted requests with a lower version than one already accepted
  for that alert.
- **superseded versions sent**: versions accepted although a newer version of the alert had been
  produced on `alerts` more than {GRACE_S:g} s before they arrived (whether or not the partner's
  minimum update interval would send that newer one).
- **duplicates**: accepted requests whose webhook-id had been accepted before (harmless:
  partners de-duplicate on it).
- **stale alerts sent as live**: versions other than a cancel that reached the partner (any
  answer) after their own `expires_at`.
- **time to recover**: from H until every alert live at H (created before, cancelled after, in
  event time) is current at the partner: a version at least as new as the newest one fan-out
  gives the partner with an event time up to H has been accepted. *never* when one never was.
  Event time, not production time: after a broker outage the versions of the outage are only
  produced once it is over, and a partner is current only once it has them.
- **first delivery after H**; **produced -> accepted** (first acceptance of each expected
  delivery, from its version's Kafka timestamp); **requests after the first 410**; **the 400'd
  alert's requests sent again** (a 400 must not be retried).

Goals (design.md, issue 14): 0 lost, 0 out of order, 0 stale sent as live, every live alert
current at the partner within {RECOVER_GOAL_S:g} s of its recovery; from the delivery contract
(docs/partners.md): superseded versions are not sent, a 400 is not retried, a 410 is final.
No figure is asserted in `make faults`: it measures and reports.

## The audit's contract (what every scenario's audit files hold)

"What was sent to whom" is promised to the city (docs/privacy.md, "Audit log"), so it holds
across the same faults: nothing reaches a partner without an audit record written first (a
`sending` record per attempt, in the worker's `audit` topic, and in `BROKER_AUDIT_FILE` where
set, before the request goes); an attempt cut short by a kill -9, a rebalance or a shutdown
leaves that record without an outcome, and the transparency report counts its message as "may
have been received"; an `alerts` record is acknowledged only once every audit record of its
deliveries is durable (Kafka has it); a record that cannot be written (full disk, a failed
produce) stops the worker before the send, unacknowledged (failure site `audit`; exit 1, or 70
if its shutdown hangs), and an audit file that cannot be appended to stops it at start (exit
2). A line of the file cut off mid-write never swallows the next record. The file is fsynced
every second and at shutdown, so a host crash (not simulated here) loses at most about its last
second of records; the `audit` topic holds those of pushes (a feed response's record and an
outcome Kafka had not yet answered may be in neither: docs/privacy.md). Unit tests:
`tests/unit/adapters/test_audit_trail.py`, `test_audit_log.py`, `test_transparency.py`; the
scenarios do not score the audit files yet.

## A worker that never gets ready

A worker whose recovery never completes (Faust retries the committed offsets without end, and
gives a recovery up for good when its seek outlives the request timeout) is not ready for as
long as it lives, and a readiness probe restarts no process. The worker's readiness watchdog
(`broker/streams/watchdog.py`, docs/streams.md) stops it, unacknowledged (failure site
`readiness`, exit 75, a critical log line saying what `/health` missed and the last progress),
once it has been not ready for `BROKER_NOT_READY_EXIT_S` (600 s) with no progress in that time:
no changelog record recovered, no input handled, no table recovery started. No scenario here runs
that long; `tests/integration/test_not_ready_watchdog.py` holds a worker's seek for ever and
sees it exit 75.

## A bug of ours in delivery

No scenario injects one; the unit tests do (`tests/unit/adapters/test_delivery_failures.py`,
`tests/unit/streams/test_fanout_failed.py`). A delivery that raises is dead-lettered as
`delivery_error` and settled (the alert's later versions, its cancel included, still go); if
rendering raised, its dead letter has no body rather than a second render in the handler. When
the handling itself fails (the dead letter not written, the `delivered` table not written, any
error out of a delivery's task) the worker stops through the failure policy (site `settle`,
always a stop; exit 1, or 70 if its shutdown hangs), unacknowledged; until 2026-12-07 such an
error killed the alert's task silently: its key stayed taken, its record never acked and the
partition's commit held, with nothing stopping. An error raised *from* an outage (Faust's
`ProducerSendError` of a `KafkaTimeoutError` while Kafka is away) is an outage, a stop, not a
bug to dead-letter; a render that raises on the breaker's one probe gives the probe back.
"""


def render(results: dict[str, Any]) -> str:
    """The whole note."""
    m = results.get("machine", {})
    lines = [
        "# Reliability: the fault-injection suite", "",
        "Generated by `python -m tests.faults` (`make faults`); the raw figures are in "
        "`tests/faults/results.json`. Real Kafka, real worker processes, real HTTP partners "
        "on 127.0.0.1; every figure is measured from what the partners received.", "",
        f"- command: `{results.get('command')}`"
        f"{' (quick variants)' if results.get('quick') else ''}, "
        f"{results.get('elapsed_s', 0) / 60:.1f} min",
        f"- date: {results.get('date')}",
        f"- machine: {m.get('nproc')} CPUs ({m.get('cpu_model')}), load average "
        f"{m.get('load_avg_1m_at_start')} at start (shared), Python {m.get('python')}, "
        f"{m.get('platform')}",
        f"- commit: `{results.get('commit')}`"
        + (f"; run on their own since and merged (each says its commit): "
           f"{', '.join(f'`{n}`' for n in results['merged'])}" if results.get("merged") else ""),
        "",
        "## Summary", "",
        f"Per scenario, each figure as {' / '.join(PARTNERS)} (`navapp` is the partner the "
        "partner faults are applied to).", "",
        *summary(results.get("scenarios", [])), "",
        HOW,
        "## Scenarios", "",
    ]
    for r in results.get("scenarios", []):
        lines += scenario_section(r)
    return "\n".join(lines).rstrip() + "\n"


def machine() -> dict[str, Any]:
    """CPU count and model, load, Python and platform."""
    model = "unknown"
    with open("/proc/cpuinfo") if Path("/proc/cpuinfo").exists() else open(os.devnull) as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu_model": model,
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "platform": platform.platform(terse=True)}


def commit() -> str:
    """Short commit of the tree, marked when it has uncommitted changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "faults" / "results.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "docs" / "reliability.md"
    dst.write_text(render(json.loads(src.read_text())))


if __name__ == "__main__":
    main()
