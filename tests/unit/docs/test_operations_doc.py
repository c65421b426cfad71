"""docs/operations.md names only metrics and log events the code has, and every metric.

- Metrics: the operator's collectors (``pymirror.operator.controller.Metrics``) and both
  workers' exporters (``pymirror.worker.metrics.StatsExporter`` over the real stats
  dataclasses, with the gauges the worker processes pass) are built in a fresh registry.
  Every ``pymirror_*`` name on the page must be one of their metrics or samples; every
  metric must be on the page; each table row's labels, label values and type must be
  the code's.
- Log events: every event in the tables under "## Logs" must be the message of a
  structlog call in pymirror/, splitter/ or registry/ (found by parsing the source), at
  a level the row gives.
- Settings: every ``PYMIRROR_<GROUP>__<FIELD>`` the page names is in the settings
  reference (docs/configuration.md, generated from the code and checked by test_docs).
"""

from __future__ import annotations

import ast
import re
from collections import Counter as Tally
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pymirror.operator.controller import PHASES, Metrics
from pymirror.operator.gc import Collected
from pymirror.worker.metrics import StatsExporter
from splitter.kafka.worker import KafkaWorkerStats
from splitter.sqs.stats import SqsWorkerStats

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
PAGE = REPO / "docs" / "operations.md"
CONFIGURATION = REPO / "docs" / "configuration.md"
SOURCES = ("pymirror", "splitter", "registry")
KAFKA_PROCESS = REPO / "pymirror" / "worker" / "kafka_process.py"
#: The gauges pymirror/worker/kafka_process.py passes to the exporter (checked below).
KAFKA_GAUGES = ("lag",)
LOG_METHODS = ("debug", "info", "warning", "error", "exception", "critical")

METRIC = re.compile(r"\bpymirror_[a-z0-9_]+")
TICKED = re.compile(r"`([^`]+)`")
SETTING = re.compile(r"\bPYMIRROR_[A-Z0-9]+__[A-Z0-9_]+\b")


def page() -> str:
    return PAGE.read_text()


def section(title: str) -> str:
    """The text of the ``## title`` section, up to the next ``## ``."""
    text = page()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def table_rows(text: str) -> Iterator[dict[str, str]]:
    """Each row of each Markdown table in ``text`` as {header: cell}."""
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if header is None:
            header = cells
        elif not set(line) <= set("|-: "):
            yield dict(zip(header, cells, strict=True))


def code_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Metrics(registry).count_phases([])
    StatsExporter("sqs", "queue", SqsWorkerStats(), registry=registry)
    StatsExporter("kafka", "topic", KafkaWorkerStats(), gauges=KAFKA_GAUGES, registry=registry)
    return registry


def families() -> dict[str, tuple[str, frozenset[str]]]:
    """Metric family -> (type, label names) as the code registers them."""
    registry = code_registry()
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for collector in list(registry._collector_to_names):
        for family in collector.describe():
            labels = getattr(collector, "_labelnames", ())
            out[family.name] = (family.type, frozenset(labels))
    return out


def sample_names(name: str, kind: str) -> set[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }[kind]
    return {name + s for s in suffixes}


def documented_metric(cell: str, known: dict[str, tuple[str, frozenset[str]]]) -> list[str]:
    """The families a table row's first cell names (``x_total`` -> ``x``)."""
    out = []
    for token in METRIC.findall(cell):
        family = next((f for f in known if token in sample_names(f, known[f][0]) | {f}), None)
        assert family is not None, f"{PAGE}: {token} is not a metric the code exports"
        out.append(family)
    return out


def logged_events() -> dict[str, set[str]]:
    """Every literal message of a log call in the sources -> the levels it is logged at."""
    events: dict[str, set[str]] = {}
    for package in SOURCES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LOG_METHODS
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    level = "error" if node.func.attr == "exception" else node.func.attr
                    events.setdefault(node.args[0].value, set()).add(level)
    return events


def test_the_kafka_gauges_here_are_the_ones_the_worker_process_passes() -> None:
    assert 'gauges=("lag",)' in KAFKA_PROCESS.read_text()


def test_every_metric_name_on_the_page_is_exported_by_the_code() -> None:
    known = families()
    exported = {n for f, (kind, _) in known.items() for n in sample_names(f, kind) | {f}}
    unknown = sorted(set(METRIC.findall(page())) - exported)
    assert not unknown, f"{PAGE} names metrics the code does not export: {unknown}"


def test_every_metric_the_code_exports_is_documented() -> None:
    rows = [r for r in table_rows(section("Metrics")) if "metric" in r]
    known = families()
    documented = {f for r in rows for f in documented_metric(r["metric"], known)}
    missing = sorted(set(known) - documented)
    assert not missing, f"{PAGE}: no table row for {missing}"


def test_each_rows_labels_and_type_are_the_codes() -> None:
    known = families()
    rows = [r for r in table_rows(section("Metrics")) if "metric" in r and "labels" in r]
    assert rows
    for row in rows:
        # "`a`, `b`" names labels a and b; "`a`: `x`, `y`" label a with its values x, y.
        names = set(TICKED.findall(row["labels"].partition(":")[0]))
        for family in documented_metric(row["metric"], known):
            kind, labels = known[family]
            assert names == labels - {"le"}, family
            if "type" in row:
                assert row["type"] == kind, family


def test_the_documented_label_values_are_the_codes() -> None:
    values: dict[str, list[str]] = {}
    for row in table_rows(section("Metrics")):
        for family in METRIC.findall(row.get("metric", "")):
            _, _, listed = row["labels"].partition(":")
            values[family] = TICKED.findall(listed)
    assert values["pymirror_operator_sessions"] == list(PHASES)
    assert values["pymirror_gc_actions_total"] == list(Collected().counts())
    kinds = ["session", "split"]
    assert values["pymirror_operator_reconcile_seconds"] == kinds
    assert values["pymirror_operator_reconcile_errors_total"] == kinds


def test_every_log_event_on_the_page_is_logged_by_the_code_at_its_level() -> None:
    events = logged_events()
    rows = [r for r in table_rows(section("Logs")) if "event" in r]
    assert len(rows) > 40
    problems = []
    for row in rows:
        levels = {lvl.strip() for lvl in row["level"].split(",")}
        for event in TICKED.findall(row["event"]):
            if event not in events:
                problems.append(f"{event!r} is not logged anywhere")
            elif not events[event] & levels:
                problems.append(f"{event!r} is logged at {sorted(events[event])}, not {levels}")
    assert not problems, f"{PAGE}: " + "; ".join(problems)


def test_no_event_is_listed_twice() -> None:
    rows = [r for r in table_rows(section("Logs")) if "event" in r]
    counts = Tally(e for r in rows for e in TICKED.findall(r["event"]))
    assert [e for e, n in counts.items() if n > 1] == []


def test_every_setting_on_the_page_is_in_the_settings_reference() -> None:
    reference = CONFIGURATION.read_text()
    missing = sorted({s for s in SETTING.findall(page()) if f"`{s}`" not in reference})
    assert not missing, f"{PAGE} names settings not in {CONFIGURATION}: {missing}"
