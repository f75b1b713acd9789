"""One study writer at a time: a lock on the project's data folder, held by a ``kedro run`` while it runs.

Two runs of one project share ``data/`` (checkpoints, the array cache, models): running them at once corrupts
each other's state silently. The lock is an ``flock`` on a file, so the kernel releases it when the holder
exits, however it exits (SIGKILL included): a lock is never left behind by a crashed run.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from sstkd.errors import UserError


class ProjectBusyError(UserError, RuntimeError):
    """Another run holds the project's lock."""


class ProjectLock:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, description: str = "") -> None:
        """Take the lock or raise :class:`ProjectBusyError` naming the run that holds it (never waits)."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ProjectBusyError(
                f"another run is using this project's data ({self.holder() or 'holder unknown'}; lock {self.path}). "
                f"Two runs at once would overwrite each other's checkpoints, cache and models: wait for it to "
                f"finish, or run from a separate clone.") from None
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": description or " ".join(sys.argv)}
        os.write(fd, json.dumps(record).encode())
        self._fd = fd

    def holder(self) -> str:
        """Who holds the lock, as written by the holder (pid, start time, command)."""
        try:
            record = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return ""
        if not record:
            return ""
        return f"pid {record.get('pid')}, started {record.get('started')}: {record.get('command')}"

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
