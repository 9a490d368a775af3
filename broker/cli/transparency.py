"""``broker transparency``: what each partner was sent, in plain language."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from broker.terminal import fail


def transparency(
    partners: Annotated[Path, typer.Option(help="Partners file.")] = Path("fixtures/partners.toml"),
    audit: Annotated[Path, typer.Option(help="Audit log (JSON lines).")] = Path("out/audit.jsonl"),
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Also write the report as HTML here.")
    ] = None,
    dev_defaults: Annotated[bool, typer.Option(help="Allow development secrets.")] = True,
) -> None:
    """Print a plain-language report per partner: data shared, purpose, counts, retention."""
    import os

    from adapters.audit import read_audit
    from adapters.partners_file import PartnerConfigError, load_partners
    from adapters.transparency import build_reports, format_html, format_text

    try:
        config = load_partners(partners, env=dict(os.environ), allow_dev_defaults=dev_defaults)
    except (PartnerConfigError, OSError) as err:
        raise fail(f"--partners: {err}") from err
    if not audit.is_file():  # a report of "nothing sent" from no log would be untrue
        raise fail(f"--audit: {audit}: no such audit log (the worker writes one with "
                    "BROKER_AUDIT_FILE; `broker replay --deliver` writes audit.jsonl to its --out)")
    unreadable: list[int] = []
    try:
        records = list(read_audit(audit, unreadable))
    except OSError as err:
        raise fail(f"--audit: {audit}: cannot read it ({err.strerror})") from err
    if unreadable and not records:  # a report of zeros from another file would be untrue
        raise fail(f"--audit: {audit}: none of its {len(unreadable)} lines is an audit record "
                   "(is it the audit log? the worker's BROKER_AUDIT_FILE, or audit.jsonl in "
                   "`broker replay --deliver`'s --out)")
    reports = build_reports(config, records)
    typer.echo(format_text(reports))
    if unreadable:
        lines = ", ".join(map(str, unreadable[:5])) + (" ..." if len(unreadable) > 5 else "")
        typer.echo(f"warning: {audit}: {len(unreadable)} lines that are not audit records "
                   f"left out of the counts (line {lines}; a cut-off last line is what a "
                   "killed writer leaves)", err=True)
    if html_out is not None:
        try:  # a path under a file, or on /proc, ended the report with a traceback
            html_out.parent.mkdir(parents=True, exist_ok=True)
            html_out.write_text(format_html(reports), encoding="utf-8")
        except OSError as err:
            raise fail(f"--html {html_out}: cannot write it ({err.strerror or err}): give a "
                       "file path that can be written") from err
        typer.echo(f"HTML report written to {html_out}")
