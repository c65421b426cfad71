"""docs/install.md's values table lists every value of the chart, and only those."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.unit]

REPO = Path(__file__).resolve().parents[3]
VALUES = REPO / "deploy" / "pymirror" / "values.yaml"
DOC = REPO / "docs" / "install.md"


def leaves(tree: dict[str, Any], prefix: str = "", *, maps: bool = False) -> set[str]:
    """The dotted paths of the values (``maps``: of the maps holding them too)."""
    out: set[str] = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= leaves(value, path + ".", maps=maps)
            if maps:
                out.add(path)
        else:
            out.add(path)
    return out


def documented() -> set[str]:
    text = DOC.read_text()
    section = text.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names |= set(re.findall(r"`([A-Za-z.]+)`", first))
    return names


def test_every_chart_value_is_in_the_values_table() -> None:
    values = yaml.safe_load(VALUES.read_text())
    paths = leaves(values)
    names = documented()
    missing = sorted(p for p in paths if not any(p == n or p.startswith(n + ".") for n in names))
    # a map value documented as one row (operator.resources) covers its keys
    assert not missing, f"add to docs/install.md#values: {missing}"


def test_every_row_of_the_values_table_is_a_chart_value() -> None:
    paths = leaves(yaml.safe_load(VALUES.read_text()), maps=True)
    unknown = sorted(n for n in documented() if n not in paths)
    assert not unknown, f"docs/install.md#values names values the chart lacks: {unknown}"


#: IAM has one action for a call and its batch form.
_BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage"}
_BATCH["ChangeMessageVisibilityBatch"] = "ChangeMessageVisibility"


def sqs_actions_of_the_code() -> set[str]:
    """The SQS API actions splitter/sqs/client.py (the one SQS adapter) calls."""
    text = (REPO / "splitter" / "sqs" / "client.py").read_text()
    calls = set(re.findall(r"self\._client\.([a-z_]+)\(", text))
    actions = {"".join(part.title() for part in call.split("_")) for call in calls}
    batches = set(re.findall(r'"([A-Za-z]+Batch)"', text)) | {
        "".join(p.title() for p in name.split("_"))
        for name in re.findall(r'"([a-z_]+_batch)"', text)
    }
    return {a for a in actions if a in _BATCH.values() or not a.endswith("Batch")} | {
        _BATCH[b] for b in batches if b in _BATCH
    }


def test_the_iam_policy_allows_every_sqs_action_the_code_calls() -> None:
    section = DOC.read_text().split("\n## IAM policy for SQS splitting\n", 1)[1]
    policy = section.split("```json\n", 1)[1].split("```", 1)[0]
    listed = set(re.findall(r'"sqs:([A-Za-z]+)"', policy))
    actions = sqs_actions_of_the_code()
    assert {"GetQueueUrl", "ReceiveMessage", "SendMessage", "CreateQueue"} <= actions
    missing = sorted(actions - listed)
    assert not missing, f"docs/install.md's IAM policy lacks sqs:{missing}"
