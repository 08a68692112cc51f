"""Figures for the business and for other systems: `report` and `export journal` (domain/reports.py,
domain/journal.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cli.common import EXIT_INVALID, CommandError, database

if TYPE_CHECKING:
    from cli.common import Subcommands
    from config import Settings
    from domain.reports import Period


def add_report(sub: Subcommands) -> None:
    report = sub.add_parser("report", help="the business report: funnel, cycle times, money, returns, stock")
    report.add_argument("--since", help="first UTC day of the orders placed (YYYY-MM-DD)")
    report.add_argument("--until", help="last UTC day, inclusive (YYYY-MM-DD)")
    report.add_argument("--html", type=Path, help="also write the report with its charts to this HTML file")
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=cmd_report)


def add_export(sub: Subcommands) -> None:
    export = sub.add_parser("export", help="exports for other systems").add_subparsers(
        dest="action", required=True
    )
    journal = export.add_parser("journal", help="the payment ledger's movements as CSV, for the ERP")
    journal.add_argument("--since", required=True, help="first UTC day (YYYY-MM-DD)")
    journal.add_argument("--until", required=True, help="last UTC day, inclusive (YYYY-MM-DD)")
    journal.add_argument("file", type=Path, help="the CSV file to write")
    journal.set_defaults(handler=cmd_export_journal)


async def cmd_report(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from dataclasses import asdict  # dataclasses loads inspect: not for every --help

    from cli.render import as_json, render_report
    from domain.reports import build_report

    period = _period(args.since, args.until)
    if args.html is not None and not args.html.resolve().parent.is_dir():
        raise CommandError(f"--html {args.html}: no such folder", EXIT_INVALID)
    with database(settings) as sessions:
        report = build_report(sessions, period, settings.delivery_sla)
    if args.html is not None:
        from domain.report_html import CHARTS_MISSING, charts_available, render_html

        args.html.write_text(render_html(report), encoding="utf-8")
    print(as_json(asdict(report)) if args.json else render_report(report), file=out)
    if args.html is not None:
        print(f"wrote {args.html}", file=sys.stderr if args.json else out)
        if not charts_available():  # the page says so too
            print(f"without charts: {CHARTS_MISSING}", file=sys.stderr)


async def cmd_export_journal(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import render_journal_export
    from domain.journal import JournalMismatch, journal, write_csv

    period = _period(args.since, args.until)
    if not args.file.resolve().parent.is_dir():
        raise CommandError(f"{args.file}: no such folder", EXIT_INVALID)
    with database(settings) as sessions:
        entries = journal(sessions, period)
    try:
        write_csv(entries, args.file)
    except JournalMismatch as exc:
        raise CommandError(str(exc)) from None
    print(render_journal_export(entries, period, args.file), file=out)


def _period(since: str | None, until: str | None) -> Period:
    from domain.reports import ReportError, parse_period

    try:
        return parse_period(since, until)
    except ReportError as exc:
        raise CommandError(str(exc), EXIT_INVALID) from None
