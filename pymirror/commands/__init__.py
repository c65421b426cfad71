"""Sub-commands of the ``pymirror`` CLI, one module each.

A module here exposes ``configure(parser) -> None`` (add its arguments, set
``func``); list it in ``COMMANDS`` with its one-line help to make it reachable.
A command module only parses and calls: it imports the engine (aiobotocore,
aiokafka, rich, ...) inside its ``func``, so that listing the commands stays fast.
"""

from __future__ import annotations

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "pymirror.commands.demo",
        "split an SQS queue between two sessions on an embedded SQS endpoint",
    ),
    "exec": (
        "pymirror.commands.exec",
        "run a local command inside a split session (mirrord's feature.split_queues)",
    ),
    "info": (
        "pymirror.commands.info",
        "print versions of pymirror and its libraries (and the settings)",
    ),
    "mirror": (
        "pymirror.commands.mirror",
        "mirror a target's inbound TCP to --to and/or a pcap file",
    ),
    "operator": (
        "pymirror.commands.operator",
        "run the operator: drive SplitSessions and their QueueSplits in a cluster",
    ),
    "replay": ("pymirror.commands.replay", "replay a pcap file's TCP flows to --to"),
    "sandbox": (
        "pymirror.commands.sandbox",
        "a local stand-in cluster (API server, SQS, Kafka, local runtime): up|down|status|env",
    ),
    "session": (
        "pymirror.commands.session",
        "kill one split session (kill --id) or all of a namespace (kill-all)",
    ),
    "status": (
        "pymirror.commands.status",
        "show split sessions and queue splits (like mirrord operator status)",
    ),
    "worker": ("pymirror.commands.worker", "run a split worker for one original queue/topic"),
}
