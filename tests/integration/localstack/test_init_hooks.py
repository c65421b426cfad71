"""localstack/init's READY hooks on a real LocalStack in host mode (localstack/run.sh).

One LocalStack for the module, started by the test launcher (tests/servers/sqs.py) with
``PYMIRROR_LOCALSTACK_DEMO=1`` and ``PYMIRROR_LOCALSTACK_QUEUES=AdQueue``: the generic hook
(10-create-queues.py) makes a bare ``AdQueue`` first, so the demo hook (20-demo-queues.py)
meets one queue that exists and three that do not. Every expected attribute, tag and
policy statement is written out here, independently of the hook's code.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.servers.pool import ServerPool
from tests.servers.process import CACHE, REPO, ServerError
from tests.servers.sqs import RunningSqs, localstack_python, start_localstack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

HOOK = REPO / "localstack" / "init" / "ready.d" / "20-demo-queues.py"
ACCOUNT, REGION = "000000000000", "us-east-1"
ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}"
MEME_TAGS = {"app": "meme-app", "team": "memes", "env": "local"}
DLQ = "IncomingMemeQueue-dlq"
NAMES = ("AdQueue", "IncomingMemeQueue", DLQ, "orders.fifo")


def policy(name: str, consumer: str) -> dict[str, Any]:
    arn = f"{ARN}:{name}"
    return {
        "Version": "2012-10-17",
        "Id": f"{arn}/policy",
        "Statement": [
            {
                "Sid": "AccountSends",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
            },
            {
                "Sid": "ConsumerReceives",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/{consumer}"},
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ],
                "Resource": arn,
            },
        ],
    }


#: name -> (attributes that must be exactly these, JSON attributes as values, tags).
EXPECTED: dict[str, tuple[dict[str, str], dict[str, Any], dict[str, str]]] = {
    "IncomingMemeQueue-dlq": (
        {"MessageRetentionPeriod": "1209600"},
        {},
        {**MEME_TAGS, "role": "dead-letter"},
    ),
    "IncomingMemeQueue": (
        {
            "VisibilityTimeout": "30",
            "MessageRetentionPeriod": "345600",
            "ReceiveMessageWaitTimeSeconds": "20",
        },
        {
            "Policy": policy("IncomingMemeQueue", "meme-app"),
            "RedrivePolicy": {
                "deadLetterTargetArn": f"{ARN}:IncomingMemeQueue-dlq",
                "maxReceiveCount": 5,
            },
        },
        MEME_TAGS,
    ),
    "AdQueue": (
        {"VisibilityTimeout": "60"},
        {"Policy": policy("AdQueue", "meme-app")},
        {**MEME_TAGS, "team": "ads"},
    ),
    "orders.fifo": (
        {"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "30"},
        {"Policy": policy("orders.fifo", "orders")},
        {"app": "orders", "team": "shop", "env": "local"},
    ),
}


@pytest.fixture(scope="module")
def localstack() -> Iterator[RunningSqs]:
    with pytest.MonkeyPatch.context() as mp:  # the launcher passes its environment on
        mp.setenv("PYMIRROR_LOCALSTACK_DEMO", "1")
        server = start_localstack("localstack-demo-queues", queues=("AdQueue",))
    yield server
    server.stop()


@pytest.fixture
def sqs(localstack: RunningSqs) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=localstack.endpoint.url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def queue_names(sqs: Any) -> list[str]:
    return sorted(url.rsplit("/", 1)[1] for url in sqs.list_queues().get("QueueUrls", []))


def assert_demo_state(sqs: Any, extra_tags: dict[str, dict[str, str]] | None = None) -> None:
    """Exactly the demo queues, each with exactly its attributes, policy and tags."""
    assert queue_names(sqs) == sorted(NAMES)
    for name, (plain, as_json, tags) in EXPECTED.items():
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert {k: got.get(k) for k in plain} == plain, name
        assert {k: json.loads(got[k]) for k in as_json if k in got} == as_json, name
        if not as_json:
            assert "Policy" not in got, name
        if "FifoQueue" not in plain:
            assert "FifoQueue" not in got, name
        want = {**tags, **(extra_tags or {}).get(name, {})}
        assert sqs.list_queue_tags(QueueUrl=url).get("Tags", {}) == want, name
        assert not any(k.startswith("pymirror.dev/") for k in want), "not pymirror's queues"


def run_hook(url: str, cache: Path = CACHE) -> list[str]:
    """The demo hook run again, as a script, with LocalStack's own interpreter; its lines."""
    out = subprocess.run(
        [str(localstack_python(cache)), str(HOOK), "--endpoint-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_both_ready_hooks_ran_and_succeeded(localstack: RunningSqs) -> None:
    with urllib.request.urlopen(f"{localstack.endpoint.url}/_localstack/init/ready") as resp:
        ready = json.loads(resp.read())
    assert ready["completed"] is True
    assert {s["name"]: s["state"] for s in ready["scripts"]} == {
        "10-create-queues.py": "SUCCESSFUL",
        "20-demo-queues.py": "SUCCESSFUL",
    }


def test_the_demo_queues_exist_with_their_exact_attributes_policies_and_tags(sqs: Any) -> None:
    """Three made by the hook, and AdQueue, made bare before it, brought to the same state."""
    assert_demo_state(sqs)


def test_a_rerun_changes_nothing_and_duplicates_nothing(localstack: RunningSqs, sqs: Any) -> None:
    lines = run_hook(localstack.endpoint.url)
    assert [line.rsplit("/", 1)[1] for line in lines] == [
        "IncomingMemeQueue-dlq exists, unchanged",
        "IncomingMemeQueue exists, unchanged",
        "AdQueue exists, unchanged",
        "orders.fifo exists, unchanged",
    ]
    assert_demo_state(sqs)


def test_a_rerun_restores_changed_attributes_and_keeps_tags_it_did_not_set(
    localstack: RunningSqs, sqs: Any
) -> None:
    """1. Change a demo queue's visibility timeout and policy, add a tag of one's own and
    change a demo tag; 2. re-run the hook; 3. the demo settings are back, the own tag stays."""
    url = sqs.get_queue_url(QueueName="IncomingMemeQueue")["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={
            "VisibilityTimeout": "5",
            "Policy": json.dumps(policy("IncomingMemeQueue", "someone-else")),
        },
    )
    sqs.tag_queue(QueueUrl=url, Tags={"owner": "me", "env": "changed"})
    lines = run_hook(localstack.endpoint.url)
    assert lines[1].rsplit("/", 1)[1] == (
        "IncomingMemeQueue exists, set Policy, set VisibilityTimeout, tag env"
    )
    assert_demo_state(sqs, extra_tags={"IncomingMemeQueue": {"owner": "me"}})


def test_without_the_variable_the_demo_hook_creates_nothing(
    sqs_servers: ServerPool[RunningSqs],
) -> None:
    """The suite's shared LocalStack (started through the same run.sh without
    ``PYMIRROR_LOCALSTACK_DEMO``): the demo hook ran, succeeded and made no queue."""
    try:
        url = sqs_servers.get("localstack").endpoint.url
    except ServerError as e:
        pytest.fail(f"SQS server 'localstack' unavailable: {e}", pytrace=False)
    with urllib.request.urlopen(f"{url}/_localstack/init/ready") as resp:
        ready = json.loads(resp.read())
    assert {s["name"]: s["state"] for s in ready["scripts"]}["20-demo-queues.py"] == "SUCCESSFUL"
    client = boto3.client(
        "sqs",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    # The dead-letter queue's name is the demo's own (tests use unique names).
    urls = client.list_queues(QueueNamePrefix=DLQ).get("QueueUrls", [])
    assert [u for u in urls if u.rsplit("/", 1)[1] == DLQ] == []
