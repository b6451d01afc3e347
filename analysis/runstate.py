"""Where a run stands, readable without Ray: `RUN_DIR/status.json` and the driver's lock `RUN_DIR/.lock`.

The sweep driver (sweeps/runner.py) holds an exclusive lock on `RUN_DIR/.lock` while it runs (so a second driver
on the same folder stops with one line naming the first), and writes `status.json` when it starts and ends:

    {"state": "running" | "finished" | "interrupted" | "failed", "trials": 30, "finished": 12, "pid": 4242, ...}

The report reads both: a run whose state is not "finished" gets a first line saying it is incomplete, and a
"running" state whose lock nobody holds any more is a driver that died (killed, machine lost). The lock is an
OS file lock (flock), so a dead driver's lock is released by the kernel and the next driver takes it over.

    with RunLock(run_dir):            # raises RunLocked(message) when another live process holds it
        write_status(run_dir, "running", trials=30, finished=0)
    read_status(run_dir)              # {} when the run has none (older runs, copied logs)
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from analysis.files import atomic_write

STATUS = "status.json"
LOCK = ".lock"


class RunLocked(Exception):
    """Another live driver holds the run's lock; the message names it."""


class RunLock:
    """An exclusive, non-blocking lock on RUN_DIR/.lock that records who holds it."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLocked(f"{self.path.parent} is in use by another sweep driver ({holder}): wait for it to "
                            f"finish or stop it, or pass --out with another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that has not written its name yet"
    return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"


def driver_alive(run_dir: str | Path) -> bool:
    """True when some process holds the run's lock right now."""
    path = Path(run_dir) / LOCK
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the shared lock just taken
    return False


def write_status(run_dir: str | Path, state: str, **facts: Any) -> None:
    atomic_write(Path(run_dir) / STATUS, json.dumps(
        {"state": state, **facts, "pid": os.getpid(), "updated": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2))


def read_status(run_dir: str | Path) -> dict[str, Any]:
    try:
        status = json.loads((Path(run_dir) / STATUS).read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}
