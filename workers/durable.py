"""Making a write survive a power loss: the file's bytes, then the rename in its folder.

One implementation for every file that must be on disk before something leaves the process:
the exchange journal's log (workers/exchange/journal.py) and the FIX session's sequence
numbers (workers/fix/session.py)."""

from __future__ import annotations

import os
from pathlib import Path


def sync_file(fd: int) -> None:
    """The file's data on disk (its metadata too where fdatasync is missing)."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def sync_dir(path: Path) -> None:
    """fsync a directory (a rename in it is durable then).  Windows cannot open directories
    and makes renames durable with the file system's own journal: nothing to do there."""
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
