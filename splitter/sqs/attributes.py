"""The attributes of a temporary SQS queue, derived from the original's (docs/how-it-works.md).

Pure: data in, data out. A temporary queue (a session's, or the fallback the
workload reads) copies the original's writable attributes - FIFO, KMS and
redrive settings included - and its Policy with every occurrence of the
original's ARN and name replaced by the temporary queue's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from splitter.errors import SqsError
from splitter.naming import FIFO_SUFFIX
from splitter.sqs.queue_names import NAME_CHARS

#: Attributes ``CreateQueue`` accepts (the AWS API reference's complete list).
#: An allow-list, not "everything but the read-only ones": real SQS rejects
#: an attribute name it does not know, and servers return extras.
WRITABLE_ATTRIBUTES = frozenset(
    {
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "Policy",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "RedrivePolicy",
        "RedriveAllowPolicy",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "SqsManagedSseEnabled",
        "FifoQueue",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
    }
)
#: Valid only on a FIFO queue; SQS rejects them (even "false") on a standard one.
FIFO_ONLY_ATTRIBUTES = frozenset(
    {"FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}
)


def temporary_arn(original_arn: str, temp_name: str) -> str:
    """The ARN of ``temp_name`` beside the original: same partition, region and account."""
    parts = original_arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs":
        raise SqsError(f"{original_arn!r} is not an SQS queue ARN (arn:PARTITION:sqs:...)")
    return ":".join([*parts[:5], temp_name])


def rewrite_policy(policy: str, original_name: str, original_arn: str, temp_name: str) -> str:
    """``policy`` with the original's ARN and name, each as a whole token, made the temp's.

    One left-to-right pass, ARNs tried before the bare name, so replaced text is
    never scanned again. An ARN counts as the original's when its region and
    account are the original's or the wildcard ``*``
    (``arn:aws:sqs:*:123456789012:orders``); only its name part changes, a
    wildcard stays. A token ends where a queue name cannot go on: ``orders`` is
    not touched inside ``orders-dlq``, ``my-orders`` or ``orders.fifo``. A bare
    name after ``:`` ends some other ARN (an SNS topic, a queue of another
    account or region) and is left alone; in a URL, a ``Sid`` or an ``Id`` it is
    replaced.
    """
    temporary_arn(original_arn, temp_name)  # checks original_arn
    partition, region, account = original_arn.split(":")[1], *original_arn.split(":")[3:5]
    arn_head = (
        rf"arn:{re.escape(partition)}:sqs:(?:{re.escape(region)}|\*):(?:{re.escape(account)}|\*):"
    )
    pattern = re.compile(
        rf"(?<![{NAME_CHARS}])(?P<arn>{arn_head}){re.escape(original_name)}"
        rf"(?![{NAME_CHARS}]|\.fifo)"
        rf"|(?<![{NAME_CHARS}:]){re.escape(original_name)}(?![{NAME_CHARS}]|\.fifo)"
    )
    return pattern.sub(lambda m: (m.group("arn") or "") + temp_name, policy)


def temporary_attributes(
    original_attributes: Mapping[str, str],
    original_name: str,
    original_arn: str,
    temp_name: str,
    temp_arn: str,
) -> dict[str, str]:
    """The ``CreateQueue`` attributes of a temporary queue like the original.

    Writable attributes are copied, read-only and unknown ones dropped; FIFO
    attributes only on a FIFO temporary (named ``*.fifo``), where
    ``FifoQueue`` is set explicitly and ``DelaySeconds`` is 0 (a standard temporary
    keeps it: its forwards set a per-message delay of 0); ``SqsManagedSseEnabled`` only without a
    KMS key (SQS refuses both); the Policy is rewritten (:func:`rewrite_policy`).
    """
    if temporary_arn(original_arn, temp_name) != temp_arn:
        raise SqsError(f"temporary ARN {temp_arn!r} is not {temp_name!r} beside {original_arn!r}")
    fifo = temp_name.endswith(FIFO_SUFFIX)
    attributes = {
        key: value for key, value in original_attributes.items() if key in WRITABLE_ATTRIBUTES
    }
    if not fifo:
        for key in FIFO_ONLY_ATTRIBUTES:
            attributes.pop(key, None)
    else:
        attributes["FifoQueue"] = "true"
        # FIFO refuses a per-message delay, so a forward could not undo a copied delay:
        # the message was delayed by the original already and is not delayed again.
        if "DelaySeconds" in attributes:
            attributes["DelaySeconds"] = "0"
    if attributes.get("KmsMasterKeyId"):
        attributes.pop("SqsManagedSseEnabled", None)
    else:
        attributes.pop("KmsMasterKeyId", None)
    if attributes.get("Policy"):
        attributes["Policy"] = rewrite_policy(
            attributes["Policy"], original_name, original_arn, temp_name
        )
    else:
        attributes.pop("Policy", None)
    return attributes
