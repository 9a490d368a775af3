"""``broker transparency``: what each partner was sent, in plain language, from an audit log
file (``--audit``) or from the worker's ``audit`` topic (``--kafka``: every worker's records;
one worker's ``BROKER_AUDIT_FILE`` holds only its own)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from broker.terminal import err_console, fail

if TYPE_CHECKING:
    from adapters.audit import AuditRecord
    from broker.streams.audit_topic import ReadProgress

# (the records, the warning to print after the report about those that were left out)
Read = tuple[list["AuditRecord"], str | None]


def transparency(
    ctx: typer.Context,
    partners: Annotated[Path, typer.Option(help="Partners file.")] = Path("fixtures/partners.toml"),
    audit: Annotated[
        Path, typer.Option(help="Audit log (JSON lines): a worker's BROKER_AUDIT_FILE (its "
                           "records only), or `broker replay --deliver`'s. Not with --kafka.")
    ] = Path("out/audit.jsonl"),
    kafka: Annotated[
        str | None,
        typer.Option("--kafka", help="Read the worker's audit topic at HOST:PORT instead: "
                     "every worker's records, as far back as BROKER_AUDIT_RETENTION_S keeps "
                     "them; with the worker's Kafka settings (BROKER_KAFKA_SECURITY_PROTOCOL, "
                     "...: docs/settings-env.md). Not with --audit."),
    ] = None,
    topic_prefix: Annotated[
        str | None,
        typer.Option(help="With --kafka: prefix of the topic names (env BROKER_TOPIC_PREFIX)."),
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Also write the report as HTML here.")
    ] = None,
    dev_defaults: Annotated[bool, typer.Option(help="Allow development secrets.")] = True,
) -> None:
    """Print a plain-language report per partner: data shared, purpose, counts, retention.

    The counts are of the audit log given with --audit, or of the worker's audit topic with
    --kafka (read from its oldest record up to the last one there when the reading starts).
    """
    import os

    from adapters.partners_file import PartnerConfigError, load_partners
    from adapters.transparency import build_reports, format_html, format_text

    source = ctx.get_parameter_source("audit")  # typer's own click: the enum's name is stable
    if kafka is not None and source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
        raise fail("--audit and --kafka: give one (--audit reads one audit log file, --kafka "
                   "the worker's audit topic, with every worker's records)")
    if kafka is None and topic_prefix is not None:
        raise fail("--topic-prefix: only with --kafka HOST:PORT (it names the audit topic)")
    if html_out is not None:  # before the report: it was printed whole, then refused
        _check_html(html_out)
    try:
        config = load_partners(partners, env=dict(os.environ), allow_dev_defaults=dev_defaults)
    except (PartnerConfigError, OSError) as err:
        raise fail(f"--partners: {err}") from err
    records, left_out = _read_file(audit) if kafka is None else _read_topic(kafka, topic_prefix)
    reports = build_reports(config, records)
    typer.echo(format_text(reports))
    if left_out:
        typer.echo(f"warning: {left_out}", err=True)
    if html_out is not None:
        try:  # a path under a file, or on /proc, ended the report with a traceback
            html_out.parent.mkdir(parents=True, exist_ok=True)
            html_out.write_text(format_html(reports), encoding="utf-8")
        except OSError as err:
            raise fail(f"--html {html_out}: cannot write it ({err.strerror or err}): give a "
                       "file path that can be written") from err
        typer.echo(f"HTML report written to {html_out}")


def _check_html(path: Path) -> None:
    """Exit 2 naming --html if the report cannot be written there: a directory, a path under
    a file, a place without the right to write."""
    import os

    if path.is_dir():
        raise fail(f"--html {path}: is a directory: give a file path for the HTML report")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise fail(f"--html {path}: cannot write it ({err.strerror or err}): give a file path "
                   "that can be written") from err
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise fail(f"--html {path}: cannot write it (Permission denied): give a file path "
                   "that can be written")


def _read_file(audit: Path) -> Read:
    """The records of an audit log file; exits 2 naming what is wrong with it."""
    from adapters.audit import read_audit

    if audit.is_dir():
        raise fail(f"--audit: {audit}: is a directory, not an audit log (give the file: the "
                   "worker's BROKER_AUDIT_FILE, or audit.jsonl in `broker replay --deliver`'s "
                   "--out)")
    if not audit.is_file():  # a report of "nothing sent" from no log would be untrue
        raise fail(f"--audit: {audit}: no such audit log (the worker writes one with "
                    "BROKER_AUDIT_FILE; `broker replay --deliver` writes audit.jsonl to its "
                    "--out; the worker's audit topic is read with --kafka HOST:PORT)")
    unreadable: list[int] = []
    try:
        records = list(read_audit(audit, unreadable))
    except OSError as err:
        raise fail(f"--audit: {audit}: cannot read it ({err.strerror})") from err
    if unreadable and not records:  # a report of zeros from another file would be untrue
        raise fail(f"--audit: {audit}: none of its {len(unreadable)} lines is an audit record "
                   "(is it the audit log? the worker's BROKER_AUDIT_FILE, or audit.jsonl in "
                   "`broker replay --deliver`'s --out)")
    if not unreadable:
        return records, None
    lines = ", ".join(map(str, unreadable[:5])) + (" ..." if len(unreadable) > 5 else "")
    return records, (f"{audit}: {len(unreadable)} lines that are not audit records left out "
                     f"of the counts (line {lines}; a cut-off last line is what a killed "
                     "writer leaves)")


def _read_topic(bootstrap: str, topic_prefix: str | None) -> Read:
    """The records of the worker's audit topic (``broker.streams.audit_topic``); exits 2 for a
    bad setting or no such topic, ``EXIT_UNAVAILABLE`` when Kafka does not answer."""
    from kafka.errors import KafkaError

    from broker.cli.common import kafka_unreachable_at
    from broker.drive import AUDIT
    from broker.streams.audit_topic import (
        AuditTopicMissing,
        AuditTopicStalled,
        read_audit_topic,
    )
    from broker.streams.cli import EXIT_UNAVAILABLE, kafka_logs_quiet, load_settings
    from broker.streams.produce import KafkaUnreachable

    settings = load_settings({"bootstrap": "--kafka"}, bootstrap=bootstrap,
                             topic_prefix=topic_prefix)
    topic = settings.topic_prefix + AUDIT
    try:
        with kafka_logs_quiet(settings.log_level), _reading_bar(topic) as progress:
            read = read_audit_topic(
                settings.bootstrap, topic, security=settings.security,
                connect_timeout_s=settings.kafka_connect_timeout_s, progress=progress,
            )
    except KafkaUnreachable as err:
        raise kafka_unreachable_at(bootstrap, err.timeout_s) from None
    except AuditTopicMissing:
        raise fail(f"--kafka {bootstrap}: no topic {topic} there (a worker creates it at its "
                   "first start): check --kafka, and --topic-prefix (env BROKER_TOPIC_PREFIX) "
                   "against the worker's") from None
    except AuditTopicStalled as err:
        raise fail(f"--kafka {bootstrap}: Kafka stopped answering while {topic} was read "
                   f"({err.left} records not read in {err.stalled_s:g} s; "
                   "BROKER_KAFKA_CONNECT_TIMEOUT_S): no report of part of the topic; try again",
                   EXIT_UNAVAILABLE) from None
    except KafkaError as err:  # it answered, then a request failed (ACLs, a listener ...)
        raise fail(f"--kafka {bootstrap}: Kafka answered, but reading {topic} failed "
                   f"({type(err).__name__}: {err}): check that the brokers' advertised "
                   "listeners are reachable from here, BROKER_KAFKA_SECURITY_PROTOCOL and its "
                   "TLS/SASL settings, and the ACLs (docs/settings-env.md)",
                   EXIT_UNAVAILABLE) from None
    if read.unreadable and not read.records:  # a report of zeros from another topic: untrue
        raise fail(f"--kafka {bootstrap}: none of the {len(read.unreadable)} records of "
                   f"{topic} is an audit record (is --topic-prefix the worker's?)")
    if not read.unreadable:
        return read.records, None
    where = ", ".join(f"{p}/{o}" for p, o in read.unreadable[:5])
    return read.records, (f"{topic}: {len(read.unreadable)} records that are not audit records "
                          f"left out of the counts (partition/offset {where}"
                          f"{' ...' if len(read.unreadable) > 5 else ''})")


@contextmanager
def _reading_bar(topic: str) -> Iterator[ReadProgress | None]:
    """A progress bar on a terminal's stderr while the topic is read (a year of records may
    take a while), gone once read; None (no bar) when stderr is no terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    if not err_console.is_terminal:
        yield None
        return
    with Progress(TextColumn(f"reading {topic}"), BarColumn(), MofNCompleteColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("audit", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
