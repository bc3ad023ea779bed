"""One run per experiment folder: an advisory lock that a killed process does not leave behind.

Two runs writing one journal would interleave their steps and their pseudo labels. The lock is an
``flock`` on ``<experiment>/.lock``: the operating system releases it when the holding process
ends, however it ends, so a run killed by ``kill -9`` or a lost node never leaves the folder stuck.
The file itself stays (it holds the last holder's pid and start time, for the message).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from atso_med.errors import ConfigError

__all__ = ["LOCK_FILE", "FolderInUseError", "FolderLock"]

LOCK_FILE = ".lock"


class FolderInUseError(ConfigError):
    """Another process holds the experiment folder."""


class FolderLock:
    """An exclusive, non-blocking lock on a folder, held until :meth:`release` or process exit.

    Args:
        folder: the folder (created if missing).

    Raises:
        FolderInUseError: from :meth:`acquire`, when another process holds the folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock (a no-op when this object holds it already)."""
        import fcntl  # POSIX; imported here so that the module loads everywhere

        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise FolderInUseError(
                f"{self.path.parent} is in use by another run ({holder}); wait for it to finish or stop it, "
                "then resume this experiment"
            ) from None
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        os.write(fd, f"pid {os.getpid()} on {os.uname().nodename}, since {started}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (closing the file releases the ``flock``)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
