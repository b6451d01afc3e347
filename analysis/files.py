"""Atomic file writes, the one helper the whole project uses (analysis, sweeps and trainables).

A file is written to a hidden temporary name in its own folder and renamed over the target, so a crash, a kill
or a full disk leaves either the old file or the new one, never half of one. Hidden (dot-prefixed) names are
skipped by pyarrow datasets and by `analysis.logs.load_logs`. Standard library only: importing it pulls in
neither ray nor torch.

    atomic_write(run_dir / "sweep.json", json.dumps(obj))          # str or bytes
    with atomic_path(logs / "t1.parquet") as tmp:                  # any writer that takes a path
        pyarrow.parquet.write_table(table, tmp)
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that add one do not); on success the file
    replaces `path`, on error it is removed and `path` is untouched."""
    path = Path(path)
    # the pid keeps two processes that write the same file from sharing a temporary name
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)  # atomic on POSIX within one file system
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to `path` atomically; returns `path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return path
