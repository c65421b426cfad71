"""LocalStack READY hook: create the queues named in PYMIRROR_LOCALSTACK_QUEUES.

Comma-separated names; a name ending in ``.fifo`` becomes a FIFO queue with
content-based deduplication. Runs inside the LocalStack process (LocalStack
``exec``s hook files), so it uses LocalStack's own internal client factory.
"""

import os

from localstack.aws.connect import connect_to

names = [
    n.strip() for n in os.environ.get("PYMIRROR_LOCALSTACK_QUEUES", "").split(",") if n.strip()
]
if names:
    # Explicit credentials: otherwise botocore probes the EC2 metadata endpoint (seconds).
    sqs = connect_to(
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).sqs
    for name in names:
        attributes = {}
        if name.endswith(".fifo"):
            attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        print(f"pymirror init hook: created {url}", flush=True)
