"""Atomic file writes: a temp file beside the target, renamed over it only when complete.

A killed process therefore leaves either the old file or the new one, never half of one (DESIGN: writes are atomic).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)  # read once at import (os.umask can only be read by setting it; not thread-safe later)
os.umask(_UMASK)


def atomic_path(path: Path) -> Path:
    """A temp file next to ``path`` (same filesystem, so the final rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are ordinary files others may read
    return Path(tmp)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path``, on any failure it is removed."""
    path = Path(path)
    tmp = atomic_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
