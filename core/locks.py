"""Named locks shared by every worker process, released when their holder dies.

PostgreSQL: a session advisory lock on a connection held for the lock's lifetime; a crashed worker's
connection closes and the lock goes with it. SQLite (one machine): an flock on a file under var/locks,
which the kernel drops with the process. Used to serialise the runs and resumes of one graph thread
across workers (in-process threads, several `revloop worker` processes, Celery workers).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import text

from core.db import get_engine
from core.files import private_dir
from core.settings import Settings

POLL_SECONDS = 0.05
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:k)")
_UNLOCK = text("SELECT pg_advisory_unlock(:k)")


class LockBusy(Exception):
    """The lock stayed held by someone else for the whole wait."""


def _key64(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock (namespaced, so other users of advisory locks do not clash)."""
    digest = hashlib.blake2b(f"revloop:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def named_lock(settings: Settings, name: str, *, wait_seconds: float) -> Iterator[None]:
    """Hold the lock `name` for the block; raise LockBusy when another holder keeps it for wait_seconds."""
    engine = get_engine(settings)
    deadline = time.monotonic() + wait_seconds
    if engine.dialect.name == "postgresql":
        key = _key64(name)
        # Autocommit: the lock is the session's, not a transaction's, so no BEGIN or COMMIT around its statements
        # (two commits per lead run less on PostgreSQL).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # Short statements polled (not one blocking pg_advisory_lock): a waiting worker never holds a
            # statement open for long, and gives up after the wait.
            while not conn.execute(_TRY_LOCK, {"k": key}).scalar():
                if time.monotonic() > deadline:
                    raise LockBusy(name)
                time.sleep(POLL_SECONDS)
            try:
                yield
            finally:
                conn.execute(_UNLOCK, {"k": key})
        return
    folder = settings.var_dir / "locks"
    private_dir(folder)
    path = folder / (hashlib.blake2b(name.encode(), digest_size=16).hexdigest() + ".lock")
    fd = _flock_file(path, name, deadline)
    try:
        yield
    finally:
        # Remove the file while still holding it (one file per lead thread would otherwise pile up): a waiter
        # that opened it sees it unlinked once it gets the lock and retries on a fresh file (_flock_file).
        with suppress(FileNotFoundError):
            os.unlink(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _flock_file(path, name: str, deadline: float) -> int:
    """Open and flock the lock file at `path`, retrying when its holder unlinked it meanwhile; the held fd."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockBusy(name) from None
                    time.sleep(POLL_SECONDS)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # locked a file its previous holder had already removed: start again on the path's file
