"""Files that hold customers' data or secrets (the database, checkpoints, outbox, credentials) are readable by
revloop's own user only: folders 0700, files 0600, whatever the umask. And URLs are shown without passwords."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def private_dir(path: Path) -> Path:
    """Create the folder (and parents) 0700; tighten it if it exists with a looser mode."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create the file empty if missing, 0600 either way (SQLite's -wal/-shm files copy the database's mode).

    An existing file is never opened here: closing any descriptor of a file drops every POSIX lock this
    process holds on it, and SQLite's locks are POSIX locks (a second open/close would unlock a live database)."""
    private_dir(path.parent)
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it meanwhile
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    if path.stat().st_mode & 0o777 != PRIVATE_FILE:
        os.chmod(path, PRIVATE_FILE)
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Write atomically (a temporary file renamed into place), 0600 from the first byte."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
    return path


def redact_url(url: str | None) -> str:
    """smtp://user:secret@host:587 -> smtp://user:***@host:587 (for banners and logs)."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
