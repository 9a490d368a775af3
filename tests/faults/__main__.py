"""``python -m tests.faults [--only NAME ...] [--quick]``: run the fault scenarios, write the note.

Starts the suite's own Kafka (``scripts/kafka`` on ``--kafka-port``, fresh storage, its own run
directory; stopped at the end) unless ``--bootstrap`` names a broker. Runs each scenario in
turn; one that raises is recorded as an error and the rest still run. A full run (no
``--only``, no ``--quick``) writes ``docs/reliability.md`` and ``tests/faults/results.json``;
others write ``out/faults/reliability.md`` and ``out/faults/results.json`` unless told where.
``--merge`` (full-length runs only) puts the scenarios it ran into the existing
``tests/faults/results.json`` in place of their old results, keeps every other scenario's, and
writes both files again: each merged scenario says its own commit and date in the note.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.faults import report
from tests.faults.processes import KafkaNode
from tests.faults.runner import Options, run_scenario
from tests.faults.scenarios import Scenario, scenarios
from tests.worker_process import REPO, answers

log = logging.getLogger("tests.faults")


def _args(argv: list[str] | None) -> argparse.Namespace:
    names = [s.name for s in scenarios()]
    p = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", choices=names, metavar="NAME",
                   help=f"run only this scenario (repeatable): {', '.join(names)}")
    p.add_argument("--quick", action="store_true", help="short variants (10 s faults)")
    p.add_argument("--bootstrap", help="use this Kafka (host:port) instead of starting one")
    p.add_argument("--kafka-port", type=int, default=25092,
                   help="port of the suite's Kafka (+1: its controller); keep it below the "
                        "ephemeral range, see docs/reliability.md")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--out", type=Path, default=REPO / "out" / "faults",
                   help="working directories of the scenarios")
    p.add_argument("--report", type=Path, help="the Markdown note to write")
    p.add_argument("--json", type=Path, help="the raw results to write")
    p.add_argument("--merge", action="store_true",
                   help="put the scenarios run into tests/faults/results.json (the others' "
                        "results kept) and write docs/reliability.md from it")
    args = p.parse_args(argv)
    if args.merge and args.quick:
        p.error("--merge keeps full-length results only: not with --quick")
    return args


def _merged(results: dict[str, Any], into: Path) -> dict[str, Any]:
    """The results of ``into`` with the scenarios of ``results`` in place of theirs (in the
    suite's order), each of those marked with the commit and date it ran on."""
    old = json.loads(into.read_text())
    ran = {r["name"]: {**r, "commit": results["commit"], "date": results["date"],
                       "command": results["command"]} for r in results["scenarios"]}
    order = [s.name for s in scenarios()]
    kept = {r["name"]: r for r in old.get("scenarios", [])}
    kept.update(ran)
    old["scenarios"] = sorted(kept.values(), key=lambda r: order.index(r["name"])
                              if r["name"] in order else len(order))
    old["merged"] = sorted({*old.get("merged", []), *ran})
    return old


def _one(sc: Scenario, opts: Options) -> dict[str, Any]:
    log.info("scenario %s: %s (%.0f s of traffic)", sc.name, sc.title, sc.duration_s)
    started = time.monotonic()
    try:
        result = run_scenario(sc, opts)
    except Exception as err:  # recorded, and the next scenario runs
        log.error("scenario %s broke:\n%s", sc.name, traceback.format_exc())
        return {"name": sc.name, "title": sc.title, "what": sc.what,
                "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                "elapsed_s": round(time.monotonic() - started, 1)}
    log.info("scenario %s done in %.0f s: misses %s", sc.name, result["elapsed_s"],
             report.misses(result) or "none")
    return result


def _warn_if_ephemeral(port: int) -> None:
    """A broker port inside the kernel's ephemeral range may be taken while it is down."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return
    if low <= port + 1 and port <= high:
        log.warning("Kafka port %d is in the ephemeral range %d-%d: kafka_restart may find it "
                    "taken by a client connected to itself (docs/reliability.md)", port, low,
                    high)


def _heal_kafka(kafka: KafkaNode | None, bootstrap: str) -> None:
    """After a scenario: a broker left stopped (the Kafka scenario broke half way) is started."""
    if kafka is not None and not answers(bootstrap):
        log.warning("Kafka does not answer: starting it again")
        try:
            kafka.start()
        except Exception:  # the next scenarios will say they cannot run
            log.error("Kafka did not start again:\n%s", traceback.format_exc())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s faults %(message)s",
                        stream=sys.stderr)
    for noisy in ("kafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    args = _args(argv)
    partial = (bool(args.only) or args.quick) and not args.merge
    out_md = args.report or (args.out / "reliability.md" if partial
                             else REPO / "docs" / "reliability.md")
    out_json = args.json or (args.out / "results.json" if partial
                             else REPO / "tests" / "faults" / "results.json")
    if args.merge and not out_json.exists():
        raise SystemExit(f"--merge: {out_json} does not exist (run the whole suite first)")
    chosen = [s for s in scenarios(args.quick) if not args.only or s.name in args.only]
    kafka: KafkaNode | None = None
    bootstrap = args.bootstrap
    rundir = args.out / "kafka"  # data and logs of the suite's own broker (fresh each run)
    if bootstrap is None:
        _warn_if_ephemeral(args.kafka_port)
        kafka = KafkaNode(args.kafka_port, rundir)
        kafka.start(fresh=True)
        bootstrap = kafka.bootstrap
    opts = Options(bootstrap=bootstrap, kafka=kafka, out=args.out, seed=args.seed)
    results: dict[str, Any] = {
        "command": "python -m tests.faults" + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
        "quick": args.quick, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine(), "commit": report.commit(), "scenarios": [],
    }
    started = time.monotonic()
    try:
        for sc in chosen:
            results["scenarios"].append(_one(sc, opts))
            _heal_kafka(kafka, bootstrap)
            results["elapsed_s"] = round(time.monotonic() - started, 1)
            written = _merged(results, out_json) if args.merge else results
            out_json.parent.mkdir(parents=True, exist_ok=True)
            out_json.write_text(json.dumps(written, indent=1) + "\n")
            out_md.parent.mkdir(parents=True, exist_ok=True)
            out_md.write_text(report.render(written))
    finally:
        if kafka is not None:
            kafka.stop()
    log.info("wrote %s and %s in %.1f min", out_md, out_json, results["elapsed_s"] / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
