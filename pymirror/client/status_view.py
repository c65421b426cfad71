"""How ``pymirror status`` prints its document: tables (rich or plain), JSON or YAML.

``session_table(doc)`` and ``split_table(doc)`` turn :mod:`pymirror.client.overview`'s
document into a ``Table`` (a title, column names, rows of cells; a cell may hold several
lines). ``render(doc, output, stream)`` prints: ``json`` and ``yaml`` the document itself;
``table`` (queue URLs shortened to the queue's name) a rich table per section when
``stream`` is a terminal, else plain aligned
columns (``plain_table``: a multi-line cell continues on the next lines, the other
columns blank), for scripts, logs and CI. An empty section prints one line saying so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import yaml

Output = Literal["table", "json", "yaml"]
OUTPUTS: tuple[Output, ...] = ("table", "json", "yaml")
GAP = "   "


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str
    """What to print when there are no rows."""


def age_text(seconds: int | None) -> str:
    """``45s``, ``3m12s``, ``2h5m``, ``3d4h`` (as kubectl shows ages); ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec}s" if minutes < 10 and sec else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def filter_text(message_filter: Mapping[str, Any], jq_filter: Any, mode: Any) -> str:
    """``author=^me$, level=^x$ jq:.total > 1 (mirror)``; ``nothing`` for an empty filter."""
    parts = [f"{k}={v}" for k, v in sorted(message_filter.items())]
    text = ", ".join(parts)
    if jq_filter:
        text = f"{text} jq:{jq_filter}".strip()
    if not text:
        text = "nothing (empty filter)"
    return f"{text} (mirror)" if mode == "mirror" else text


def queue_name(destination: Any) -> str:
    """A queue URL's last path segment (the queue's name); a name or topic as it is. The
    JSON/YAML document keeps the full destination."""
    text = str(destination)
    return text.rstrip("/").rpartition("/")[2] if "://" in text else text


def _or_dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def phase_text(session: Mapping[str, Any]) -> str:
    phase = session.get("phase") or "New"
    if session.get("endReason"):
        phase = f"{phase} ({session['endReason']})"
    if session.get("deleting") and session.get("phase") not in ("Ending", "Failed"):
        phase = f"{phase}, deleting"
    return str(phase)


def session_table(doc: Mapping[str, Any]) -> Table:
    rows = []
    for s in doc["sessions"]:
        queues = [
            f"{q['id']} ({q['kind']}): {_or_dash(q['original'])} -> {_or_dash(q['temporary'])}"
            f"  [{filter_text(q['messageFilter'], q['jqFilter'], q['mode'])}]"
            for q in s["queues"]
        ]
        message = s.get("message") or ""
        if s.get("killedBy") and s["killedBy"] not in message:
            message = f"killed by {s['killedBy']}" + (f"; {message}" if message else "")
        rows.append(
            (
                str(s["name"]),
                str(s["namespace"]),
                s["targetPath"],
                s["user"],
                phase_text(s),
                _or_dash(s["sequence"]),
                age_text(s["ageSeconds"]),
                "\n".join(queues) or "-",
                message or "-",
            )
        )
    return Table(
        "Sessions",
        ("SESSION", "NAMESPACE", "TARGET", "USER", "PHASE", "SEQ", "AGE", "QUEUES", "MESSAGE"),
        tuple(rows),
        _empty("sessions", doc),
    )


def split_table(doc: Mapping[str, Any]) -> Table:
    rows = []
    for s in doc["splits"]:
        sessions = [
            f"{r['sequence']} {r['session']} -> {queue_name(r['destination'])}"
            f"  [{filter_text(r['messageFilter'], r['jqFilter'], r['mode'])}]"
            for r in s["sessions"]
        ]
        worker = s["worker"]
        if worker["replicas"] is None:
            worker_text = f"{_or_dash(worker['name'])} ({worker['error'] or 'not created yet'})"
        else:
            worker_text = f"{worker['name']} {worker['readyReplicas']}/{worker['replicas']} ready"
        c = s["counters"]
        counters = [
            "read {} fallback {} unmatched {} failed {}".format(
                *(_or_dash(c[k]) for k in ("read", "fallback", "unmatched", "failed"))
            )
        ]
        if c["lag"] is not None:
            counters.append(f"lag {c['lag']}")
        counters += [f"{name}: {n}" for name, n in sorted(c["forwarded"].items())]
        phase = "Active"
        if s["handBack"]:
            phase = f"HandBack {s['handBackPhase'] or 'Pending'}"
            if s["handBackRemaining"] is not None:
                phase += f" ({s['handBackRemaining']} left)"
        rows.append(
            (
                f"{s['namespace']}/{s['name']}",
                f"{s['target']['namespace']}/{s['targetPath']}",
                f"{s['queueId']} ({s['kind']}): {s['original']}",
                _or_dash(s["fallback"]),
                phase,
                "\n".join(sessions) or "-",
                worker_text,
                "\n".join(counters),
                age_text(s["ageSeconds"]),
            )
        )
    return Table(
        "Splits",
        (
            "SPLIT",
            "TARGET",
            "QUEUE",
            "FALLBACK",
            "PHASE",
            "SESSIONS",
            "WORKER",
            "COUNTERS",
            "AGE",
        ),
        tuple(rows),
        _empty("splits", doc),
    )


def _empty(what: str, doc: Mapping[str, Any]) -> str:
    scope = doc["scope"]
    if what == "sessions":
        where = "any namespace" if scope["allNamespaces"] else f"namespace {scope['namespace']}"
        return f"No split sessions in {where}."
    where = (
        "any namespace"
        if scope["operatorNamespace"] is None
        else f"operator namespace {scope['operatorNamespace']}"
    )
    target = "" if scope["allNamespaces"] else f" for targets in {scope['namespace']}"
    return f"No queue splits in {where}{target}."


def plain_table(table: Table) -> str:
    """Aligned columns; a cell's extra lines continue below it, other columns blank."""
    if not table.rows:
        return f"{table.title}: {table.empty}\n"
    split_rows = [[cell.split("\n") for cell in row] for row in table.rows]
    widths = [len(c) for c in table.columns]
    for row in split_rows:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    out = [f"{table.title}:", _line(table.columns, widths)]
    for row in split_rows:
        height = max(len(lines) for lines in row)
        for n in range(height):
            out.append(_line([lines[n] if n < len(lines) else "" for lines in row], widths))
    return "\n".join(out) + "\n"


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return GAP.join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _rich(tables: Sequence[Table], stream: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    console = Console(file=stream)
    for table in tables:
        if not table.rows:
            console.print(f"[bold]{table.title}:[/bold] {table.empty}")
            continue
        rich_table = RichTable(title=table.title, title_justify="left", show_lines=True)
        for column in table.columns:
            rich_table.add_column(column, overflow="fold")
        for row in table.rows:
            rich_table.add_row(*(Text(cell) for cell in row))  # no markup: "[a=b]" is text
        console.print(rich_table)


def render(doc: Mapping[str, Any], output: Output, stream: TextIO) -> None:
    """Print ``doc`` in ``output`` form (see the module docstring)."""
    if output == "json":
        stream.write(json.dumps(doc, indent=2) + "\n")
    elif output == "yaml":
        stream.write(yaml.safe_dump(dict(doc), sort_keys=False))
    else:
        tables = [session_table(doc), split_table(doc)]
        if stream.isatty():
            _rich(tables, stream)
        else:
            stream.write("\n".join(plain_table(t) for t in tables))
    stream.flush()
