"""The program the runtime tests deploy: it records what it saw, so tests assert on causes.

On start it writes ``$OUT_DIR/<pid>.start`` (its environment as JSON, written
whole by a rename) and then ``$OUT_DIR/$HOSTNAME.ready`` (its pod's readiness
probe checks for that file). On SIGTERM it writes ``$OUT_DIR/<pid>.stop``: the
names in ``$OUT_DIR`` at that moment, so a test can tell which processes had
started before this one was asked to stop, without comparing clocks. With
``CRASH_ONCE`` set, the first process of a pod exits with status 3 right after
starting (``$OUT_DIR/crashed`` records its pid). With ``HOLD_STOP`` set, a stopping
process exits only once ``$OUT_DIR/release`` exists (a pod kept in its grace period).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def main() -> None:
    out = Path(os.environ["OUT_DIR"])
    pid = os.getpid()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        record = {"seen": sorted(os.listdir(out))}
        (out / f".{pid}.stop").write_text(json.dumps(record))
        (out / f".{pid}.stop").rename(out / f"{pid}.stop")
        while os.environ.get("HOLD_STOP") and not (out / "release").exists():
            time.sleep(0.05)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    (out / f".{pid}.start").write_text(json.dumps(dict(os.environ)))
    (out / f".{pid}.start").rename(out / f"{pid}.start")
    if os.environ.get("CRASH_ONCE") and not (out / "crashed").exists():
        (out / "crashed").write_text(str(pid))
        sys.exit(3)
    (out / f"{os.environ['HOSTNAME']}.ready").write_text(str(pid))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
