"""The ephemeral capture container ("tap") for a pod in a cluster, as plain data.

Pure functions over pod objects (dicts as the Kubernetes API returns them):
``plan_tap`` decides whether a running tap can be reused or a new one must be
added, and returns the patch for the ``ephemeralcontainers`` subresource.
The tap idles (``sleep``); each capture session execs ``tcpdump`` in it and
reads the pcap stream from stdout. Ephemeral containers cannot be removed, so
the hardened security context matters: only ``NET_RAW``, no privilege
escalation, the runtime's default seccomp profile, a read-only root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TAP_NAME = "pymirror-capture"
DEFAULT_IMAGE = "nicolaka/netshoot:v0.13"
"""An image with tcpdump; override with ``--image`` (any image whose tcpdump runs as root)."""


def security_context() -> dict[str, Any]:
    return {
        "capabilities": {"drop": ["ALL"], "add": ["NET_RAW"]},
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        # File capabilities do not reach non-root exec'd binaries without ambient caps,
        # so the tap runs as uid 0 but holds nothing except NET_RAW.
        "runAsUser": 0,
        "runAsNonRoot": False,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def tap_container(name: str = TAP_NAME, image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    """The ephemeral container spec of a tap."""
    return {
        "name": name,
        "image": image,
        "command": ["sleep", "2147483647"],
        "stdin": False,
        "tty": False,
        "terminationMessagePolicy": "File",
        "securityContext": security_context(),
    }


def tcpdump_command(port: int) -> list[str]:
    """What each capture session execs in the tap: a packet-buffered pcap stream on stdout.

    ``--immediate-mode`` hands each packet on at once (otherwise libpcap holds
    them up to a second). Immediate mode uses one ring slot per snap length,
    so the snap length is 64 KiB (GRO packets, not 256 KiB) and the buffer
    32 MiB: ~500 slots, where the defaults (2 MiB / 256 KiB) leave 8 and drop.
    """
    # -Z root: with only NET_RAW, tcpdump cannot switch to its own user.
    return [
        "tcpdump",
        "-U",
        "--immediate-mode",
        "-n",
        "-s",
        "65600",
        "-B",
        "32768",
        "-Z",
        "root",
        "-i",
        "any",
        "-w",
        "-",
        f"tcp port {port}",
    ]


@dataclass(frozen=True)
class TapPlan:
    container: str
    """Name of the tap container to exec tcpdump in."""
    patch: dict[str, Any] | None
    """Body for the ``ephemeralcontainers`` subresource, or None to reuse a running tap."""


def _is_tap(name: str) -> bool:
    return name == TAP_NAME or name.startswith(TAP_NAME + "-")


def plan_tap(pod: dict[str, Any], image: str = DEFAULT_IMAGE) -> TapPlan:
    """Reuse a running tap of ``image`` in ``pod``; otherwise add one under a free name."""
    spec = pod.get("spec") or {}
    existing = spec.get("ephemeralContainers") or []
    statuses = {
        s.get("name"): s for s in (pod.get("status") or {}).get("ephemeralContainerStatuses") or []
    }
    names = {c.get("name") for c in existing}
    for container in existing:
        name = container.get("name", "")
        running = ((statuses.get(name) or {}).get("state") or {}).get("running") is not None
        if _is_tap(name) and container.get("image") == image and running:
            return TapPlan(name, None)
    name = TAP_NAME
    n = 1
    while name in names:
        n += 1
        name = f"{TAP_NAME}-{n}"
    return TapPlan(name, {"spec": {"ephemeralContainers": [*existing, tap_container(name, image)]}})


def tap_state(pod: dict[str, Any], name: str) -> str:
    """ "running", "waiting", "terminated" or "absent" for tap ``name`` in ``pod``'s status."""
    for status in (pod.get("status") or {}).get("ephemeralContainerStatuses") or []:
        if status.get("name") == name:
            state = status.get("state") or {}
            for key in ("running", "terminated", "waiting"):
                if state.get(key) is not None:
                    return key
            return "waiting"
    return "absent"
