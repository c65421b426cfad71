"""The pcap output file of ``pymirror mirror``: it replaces the named file once the capture is up.

A capture that fails to start (no such namespace or interface, a pcap input that
is not a pcap) must not empty the file the user named. So a regular file (or a
new one) is written first under a temporary name in the same directory, and
``commit`` renames it onto the real name once the pcap header is written: from
then on the capture is at its real name, readable while it grows, and survives
a crash. A special file (``/dev/null``, a FIFO) is opened as it is: there is
nothing to empty and it cannot be replaced.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from traffic.errors import CaptureError


def same_file(a: str | os.PathLike[str] | int, b: str | os.PathLike[str] | int) -> bool:
    """Whether ``a`` and ``b`` (paths or file descriptors) are one existing regular file."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return stat.S_ISREG(sa.st_mode) and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


class PcapOutput:
    """``--output FILE``: ``stream`` to write, ``commit`` once the capture is up, then ``close``.

    Not committed when closed: the temporary file is removed and ``path`` is untouched.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.committed = False
        self._temp: Path | None = None
        try:
            existing = self.path.stat()
        except FileNotFoundError:
            existing = None
        except OSError as e:
            raise CaptureError(f"cannot write {self.path}: {e.strerror or e}") from e
        try:
            if existing is not None and not stat.S_ISREG(existing.st_mode):
                self.stream: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()
                self.committed = True
                return
            fd, name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent
            )
        except OSError as e:
            raise CaptureError(f"cannot write {self.path}: {e.strerror or e}") from e
        self._temp = Path(name)
        # The mode the file would get from open(): the existing file's, else 0666 & ~umask.
        if existing is not None:
            mode = stat.S_IMODE(existing.st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        with contextlib.suppress(OSError):
            os.fchmod(fd, mode)
        self.stream = os.fdopen(fd, "wb")

    def commit(self) -> None:
        """Put the file at its real name (once): the capture is up. Thread-safe enough to call
        from the capture thread; the stream keeps writing to the same file."""
        if self.committed or self._temp is None:
            return
        try:
            os.replace(self._temp, self.path)
        except OSError as e:
            raise CaptureError(f"cannot write {self.path}: {e.strerror or e}") from e
        self.committed = True

    def discard(self) -> None:
        """Remove the temporary file if the capture never came up (safe to call at any time)."""
        if not self.committed and self._temp is not None:
            with contextlib.suppress(OSError):
                self._temp.unlink()
            self._temp = None

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            self.discard()

    def __enter__(self) -> PcapOutput:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
