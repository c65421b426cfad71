"""LocalStack READY hook: the demo queues, with tags and an access policy, when asked for.

Creates the queues the examples use (the meme app of examples/meme-app/queue-registry.yaml
and a FIFO queue) when ``PYMIRROR_LOCALSTACK_DEMO=1``; otherwise does nothing, so the
test servers started through localstack/run.sh stay empty. The queues are originals
a developer splits, so they carry the app's tags, never pymirror's bookkeeping tags.

Idempotent: a queue that exists is not created again; its attributes are set to the
ones below and the tags below are added (tags it has beside them are kept). Each queue
is created with one ``CreateQueue`` holding its attributes, Policy and tags, so a failure
leaves no half-made queue; the dead-letter queue comes first, since the others' redrive
policy and ARNs are derived from its ARN.

Two ways to run it:

* LocalStack runs it (``exec``) inside its own process at READY: host mode
  (localstack/run.sh copies localstack/init/) and Docker (localstack/compose.yaml mounts
  it). It then uses LocalStack's internal client factory.
* As a script against a running LocalStack, with boto3 (LocalStack's venv has it)::

      python localstack/init/ready.d/20-demo-queues.py --endpoint-url http://127.0.0.1:4566
"""

import json
import os
import sys

from botocore.exceptions import ClientError

REGION = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
DEMO_VAR = "PYMIRROR_LOCALSTACK_DEMO"
DLQ = "IncomingMemeQueue-dlq"
#: Codes a missing queue comes back with (the JSON and the query protocol).
MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
#: Set once, at creation: SQS refuses to change it.
CREATE_ONLY = ("FifoQueue",)
#: Attributes holding JSON: compared as values, not as text.
JSON_VALUED = ("Policy", "RedrivePolicy", "RedriveAllowPolicy")
MEME_TAGS = {"app": "meme-app", "team": "memes", "env": "local"}


def consumer_policy(arn, consumer):
    """The account's principals may send; the consumer's role receives and deletes."""
    account = arn.split(":")[4]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": f"{arn}/policy",
            "Statement": [
                {
                    "Sid": "AccountSends",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": "sqs:SendMessage",
                    "Resource": arn,
                },
                {
                    "Sid": "ConsumerReceives",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:role/{consumer}"},
                    "Action": [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:GetQueueAttributes",
                    ],
                    "Resource": arn,
                },
            ],
        },
        sort_keys=True,
    )


def demo_queues(dlq_arn):
    """``(name, attributes, tags)`` of the queues after the dead-letter queue."""
    head = dlq_arn.rsplit(":", 1)[0]  # arn:aws:sqs:REGION:ACCOUNT
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}, sort_keys=True)
    return [
        (
            "IncomingMemeQueue",
            {
                "VisibilityTimeout": "30",
                "MessageRetentionPeriod": "345600",
                "ReceiveMessageWaitTimeSeconds": "20",
                "RedrivePolicy": redrive,
                "Policy": consumer_policy(f"{head}:IncomingMemeQueue", "meme-app"),
            },
            MEME_TAGS,
        ),
        (
            "AdQueue",
            {
                "VisibilityTimeout": "60",
                "Policy": consumer_policy(f"{head}:AdQueue", "meme-app"),
            },
            {**MEME_TAGS, "team": "ads"},
        ),
        (
            "orders.fifo",
            {
                "FifoQueue": "true",
                "ContentBasedDeduplication": "true",
                "VisibilityTimeout": "30",
                "Policy": consumer_policy(f"{head}:orders.fifo", "orders"),
            },
            {"app": "orders", "team": "shop", "env": "local"},
        ),
    ]


DLQ_ATTRIBUTES = {"MessageRetentionPeriod": "1209600"}
DLQ_TAGS = {**MEME_TAGS, "role": "dead-letter"}


def queue_url(sqs, name):
    """The queue's URL, or None when it does not exist."""
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in MISSING:
            return None
        raise


def same(name, have, want):
    """Whether attribute ``name`` already has the value ``want``."""
    if have is None or name not in JSON_VALUED:
        return have == want
    try:
        return json.loads(have) == json.loads(want)
    except ValueError:
        return False


def ensure(sqs, name, attributes, tags):
    """Create the queue, or bring an existing one to these attributes and tags; its URL."""
    url = queue_url(sqs, name)
    if url is None:
        url = sqs.create_queue(QueueName=name, Attributes=attributes, tags=tags)["QueueUrl"]
        print(f"pymirror demo queues: created {url}", flush=True)
        return url
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    if current.get("FifoQueue", "false") != attributes.get("FifoQueue", "false"):
        raise RuntimeError(
            f"pymirror demo queues: {url} exists with FifoQueue={current.get('FifoQueue')}; "
            "delete it and run the hook again"
        )
    changed = {
        k: v
        for k, v in attributes.items()
        if k not in CREATE_ONLY and not same(k, current.get(k), v)
    }
    if changed:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=changed)
    have = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    missing = {k: v for k, v in tags.items() if have.get(k) != v}
    if missing:
        sqs.tag_queue(QueueUrl=url, Tags=missing)
    what = ", ".join([*(f"set {k}" for k in sorted(changed)), *(f"tag {k}" for k in missing)])
    print(f"pymirror demo queues: {url} exists, {what or 'unchanged'}", flush=True)
    return url


def create_all(sqs):
    """Every demo queue; their URLs, dead-letter queue first."""
    dlq = ensure(sqs, DLQ, DLQ_ATTRIBUTES, DLQ_TAGS)
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    urls = [dlq]
    for name, attributes, tags in demo_queues(arn["QueueArn"]):
        urls.append(ensure(sqs, name, attributes, tags))
    return urls


def hook_client():
    from localstack.aws.connect import connect_to

    # Explicit credentials: otherwise botocore probes the EC2 metadata endpoint (seconds).
    return connect_to(
        region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test"
    ).sqs


def script_client(argv):
    import argparse

    import boto3

    parser = argparse.ArgumentParser(description="Create pymirror's demo queues on LocalStack.")
    parser.add_argument("--endpoint-url", required=True, help="e.g. http://127.0.0.1:4566")
    parser.add_argument("--region", default=REGION)
    args = parser.parse_args(argv)
    return boto3.client(
        "sqs",
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


# LocalStack runs hooks with exec(code, {}): no __name__ of their own, so the builtins'
# ("builtins") shows through. Run as a script, this file is "__main__".
if __name__ == "__main__":
    create_all(script_client(sys.argv[1:]))
elif os.environ.get(DEMO_VAR, "").strip().lower() in ("1", "true", "yes"):
    create_all(hook_client())
