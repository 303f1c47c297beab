"""Engine and session handling: one session per unit of work, committed in one place.

SQLite allows one writer at a time. Write units of work take the write lock when they begin (BEGIN
IMMEDIATE) and must stay short; reads that need no lock use a read-only session (session_scope(settings,
readonly=True)): a second engine per SQLite file whose transactions BEGIN DEFERRED with PRAGMA query_only,
so in WAL mode they never wait for a writer nor make one wait. PostgreSQL uses one engine; its read-only
sessions run READ ONLY transactions. A unit of work run through run_in_transaction() is retried when the
database is busy (SQLite "database is locked", PostgreSQL serialization failure or deadlock)."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Row, Select, create_engine, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.files import private_file
from core.settings import Settings, get_settings

log = logging.getLogger("revloop.db")

_engines: dict[tuple[str, bool], Engine] = {}
_lock = threading.Lock()

# PostgreSQL SQLSTATEs that mean "try the same transaction again": serialization_failure, deadlock_detected,
# lock_not_available (lock_timeout / NOWAIT).
BUSY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


def _sqlite_pragmas(busy_timeout_ms: int, readonly: bool):
    def on_connect(dbapi_conn, _record) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _sqlite_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL lets the API, the worker and the CLI read while one of them writes.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        if readonly:
            cur.execute("PRAGMA query_only=1")  # a write through the read engine fails at once, loudly
        cur.close()

    return on_connect


class _ProcessWriteLock:
    """One SQLite writer at a time within this process, handed over the moment the previous one commits.

    SQLite's own wait for its write lock polls with growing sleeps (1, 2, 5 ... 100 ms): with several threads
    writing, the lock was often free while every waiter slept, and a lead post spent most of its time there
    (py-spy on `revloop serve` under bench/bench_ingest.py: 87 % of the database time in BEGIN IMMEDIATE). The
    threads of one process now queue on a lock that wakes the next at once; other processes (the worker, the
    CLI) still meet at SQLite's lock. A writer that waits longer than the connection's busy timeout goes on to
    BEGIN IMMEDIATE anyway, so a lock lost by a bug can never stall the process.

    Between processes (API processes, the worker, the CLI) the holder of that lock also takes an flock on a file
    beside the database (`<database>-writer.lock`) before BEGIN IMMEDIATE, polled every half millisecond: the next
    process starts writing within a millisecond of the last commit instead of after SQLite's next sleep (the
    worker's commits waited up to 100 ms behind the API's posts in a burst). The kernel drops a dead process's
    flock; a writer that cannot have it within the busy timeout goes on to BEGIN IMMEDIATE (SQLite's own lock
    still decides)."""

    FILE_POLL_SECONDS = 0.0005

    def __init__(self, wait_seconds: float, lock_path: Path | None = None):
        self.wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._holders: set[int] = set()  # id() of the DBAPI connections holding it
        self._guard = threading.Lock()
        self._lock_path = lock_path
        self._file: tuple[int, int] | None = None  # (pid, fd): opened once per process (a fork opens its own)
        self._file_held = False  # only the holder of self._lock touches this and the flock

    def _lock_file(self) -> int | None:
        if self._lock_path is None:
            return None
        if self._file is None or self._file[0] != os.getpid():
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._file = (os.getpid(), fd)
        return self._file[1]

    def _take_file_lock(self, wait: float) -> None:
        fd = self._lock_file()
        if fd is None:
            return
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._file_held = True
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return  # SQLite's busy timeout decides from here
                time.sleep(self.FILE_POLL_SECONDS)

    def _drop_file_lock(self) -> None:
        if self._file_held:
            self._file_held = False
            fcntl.flock(self._file[1], fcntl.LOCK_UN)

    def begin(self, conn) -> None:
        wait = conn.info.get(WRITE_LOCK_WAIT_KEY, self.wait_seconds)
        acquired = self._lock.acquire(timeout=wait)
        try:
            if acquired:
                self._take_file_lock(wait)
            # Take the write lock up front: a deferred transaction that reads and then writes fails at
            # once with "database is locked" when another process wrote meanwhile; IMMEDIATE waits instead.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if acquired:
                self._drop_file_lock()
                self._lock.release()
            raise
        if acquired:
            with self._guard:
                self._holders.add(_raw_id(conn.connection))

    def end(self, dbapi_connection, *_: object) -> None:
        key = _raw_id(dbapi_connection)
        with self._guard:
            held = key in self._holders
            self._holders.discard(key)
        if held:
            self._drop_file_lock()
            self._lock.release()

    def install(self, engine: Engine) -> None:
        event.listen(engine, "begin", self.begin)
        for closing in ("invalidate", "close", "close_detached"):  # a connection dropped mid-transaction
            event.listen(engine, closing, self.end)
        dialect = engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(dbapi_connection) -> None:
            try:
                commit(dbapi_connection)
            finally:
                self.end(dbapi_connection)  # after COMMIT: the next writer never finds SQLite's lock still held

        def do_rollback(dbapi_connection) -> None:
            try:
                rollback(dbapi_connection)
            finally:
                self.end(dbapi_connection)

        dialect.do_commit, dialect.do_rollback = do_commit, do_rollback  # type: ignore[method-assign]


def _raw_id(connection) -> int:
    """The DBAPI connection's id, whether given it or SQLAlchemy's pool proxy of it."""
    return id(getattr(connection, "dbapi_connection", connection))


WRITE_LOCK_WAIT_KEY = "revloop_write_lock_wait_seconds"  # a connection's own limit (write_if_free's short one)


def _sqlite_begin_deferred(conn) -> None:
    # Readers take no lock: in WAL mode they read a snapshot while a writer writes.
    conn.exec_driver_sql("BEGIN")


def _sqlite_path(url: str) -> str:
    return url.split("///", 1)[-1] if "///" in url else ""


def make_engine(url: str, *, readonly: bool = False, busy_timeout_seconds: float = 15.0) -> Engine:
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path and path != ":memory:" and not path.startswith("file:"):
            private_file(Path(path))  # 0600 in a 0700 folder: the database holds customers' data
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_seconds})
        event.listen(engine, "connect", _sqlite_pragmas(int(busy_timeout_seconds * 1000), readonly))
        if readonly:
            event.listen(engine, "begin", _sqlite_begin_deferred)
        else:
            on_disk = path and path != ":memory:" and not path.startswith("file:")
            lock_path = Path(f"{path}-writer.lock") if on_disk else None
            _ProcessWriteLock(busy_timeout_seconds, lock_path).install(engine)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_when_idle(engine)
    return engine


# A pooled server connection is pinged before use only when it sat idle for a while: one handed back moments ago
# is alive, while one idle longer may have been dropped (a server restart, a proxy's idle timeout) and is then
# replaced before anything runs on it. A ping at every checkout (pool_pre_ping) was about 4 % of a lead's CPU on
# PostgreSQL, four checkouts a lead. The graph checkpointer's pool does the same (agents.runtime).
PING_AFTER_IDLE_SECONDS = 1.0


def idle_too_long(idle_since: float | None) -> bool:
    return idle_since is not None and time.monotonic() - idle_since >= PING_AFTER_IDLE_SECONDS


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def checked_in(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection, record, _proxy) -> None:
        if not idle_too_long(record.info.pop("idle_since", None)):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping runs (outside any transaction)
        except Exception as exc:  # dropped: the pool disposes of it and checks out a fresh connection
            raise DisconnectionError(f"a pooled connection was dropped while idle: {exc}") from exc


def _has_read_engine(url: str) -> bool:
    """A second (read-only) engine only for SQLite files: in-memory databases exist once per connection."""
    path = _sqlite_path(url)
    return url.startswith("sqlite") and bool(path) and path != ":memory:" and "mode=memory" not in url


def get_engine(settings: Settings | None = None, *, readonly: bool = False) -> Engine:
    """The engine of the settings' database; readonly=True: the read-only engine on SQLite (the same engine
    on PostgreSQL, whose read-only sessions set READ ONLY per transaction)."""
    settings = settings or get_settings()
    url = settings.resolved_database_url
    key = (url, readonly and _has_read_engine(url))
    with _lock:
        if key not in _engines:
            _engines[key] = make_engine(url, readonly=key[1], busy_timeout_seconds=settings.db_busy_timeout_seconds)
        return _engines[key]


def dispose_engines(settings: Settings | None = None) -> None:
    """Close the pooled connections of every engine, or only of the settings' database."""
    url = settings.resolved_database_url if settings is not None else None
    with _lock:
        for key in [k for k in _engines if url is None or k[0] == url]:
            _engines.pop(key).dispose()


_factories: dict[tuple[int, int, bool], tuple[Engine, Settings, sessionmaker[Session]]] = {}


def session_factory(settings: Settings | None = None, *, readonly: bool = False) -> sessionmaker[Session]:
    settings = settings or get_settings()
    engine = get_engine(settings, readonly=readonly)
    # Made once per engine and settings: each sessionmaker defines a Session subclass whose event dispatch
    # SQLAlchemy sets up again: 0.43 ms of CPU per read-only unit of work when made each time, 0.26 ms cached.
    key = (id(engine), id(settings), readonly)
    cached = _factories.get(key)
    if cached is not None and cached[0] is engine and cached[1] is settings:
        return cached[2]
    bind = engine
    if readonly and engine.dialect.name == "postgresql":
        bind = engine.execution_options(postgresql_readonly=True)
    # The settings ride along, so code handed only a session (core.jobs.enqueue) can read them.
    factory = sessionmaker(bind, expire_on_commit=False, info={"settings": settings, "readonly": readonly})
    with _lock:
        if len(_factories) > 64:  # tests make many settings; a process has one or two
            _factories.clear()
        _factories[key] = (engine, settings, factory)
    return factory


@contextmanager
def session_scope(settings: Settings | None = None, *, readonly: bool = False) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error.

    readonly=True: a read-only session that never takes SQLite's write lock (nor waits for it) and never
    commits; its objects stay readable (loaded attributes) after the block. Writing through it fails."""
    session = session_factory(settings, readonly=readonly)()
    if readonly:
        try:
            yield session
        finally:
            session.close()  # ends the read transaction; detaches the objects without expiring them
        return
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def reading(settings: Settings | None = None, session: Session | None = None) -> Iterator[Session]:
    """The caller's session when it passes one (several look-ups in one unit of work: one connection checkout,
    one read transaction, one identity map), else a read-only unit of work of its own (session_scope)."""
    if session is not None:
        yield session
        return
    with session_scope(settings, readonly=True) as own:
        yield own


def read_once(session: Session, key: Hashable, load: Callable[[], T]) -> T:
    """In a read-only unit of work, what was read under `key` is read once: the lead run's parts (its records, the
    research look-ups) ask for some of the same rows. A writing unit of work reads each time (its writes would make
    a kept answer stale)."""
    if not session.info.get("readonly"):
        return load()
    kept = session.info.setdefault("read_once", {})
    if key not in kept:
        kept[key] = load()
    return kept[key]


def known_read(session: Session, key: Hashable, value: Any) -> None:
    """Tell a read-only unit of work what a read_once(key) would find, from a read that already holds it."""
    if session.info.get("readonly"):
        session.info.setdefault("read_once", {})[key] = value


def is_busy_error(exc: BaseException) -> bool:
    """True for a failure that the same unit of work may overcome by trying again: SQLite busy/locked,
    PostgreSQL serialization failure, deadlock or lock timeout."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in BUSY_SQLSTATES or getattr(orig, "pgcode", None) in BUSY_SQLSTATES:
        return True
    if isinstance(orig, sqlite3.OperationalError):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return True
        message = str(orig).lower()
        return any(m in message for m in ("database is locked", "database is busy", "database table is locked"))
    return False


R = TypeVar("R")


def run_in_transaction(
    settings: Settings | None,
    fn: Callable[[Session], R],
    *,
    attempts: int | None = None,
    readonly: bool = False,
    backoff_seconds: float = 0.05,
) -> R:
    """Run fn(session) as one unit of work and return its result; when the database is busy (see
    is_busy_error) the whole unit runs again, `attempts` times at most (default REVLOOP_DB_BUSY_RETRIES),
    after a short exponential backoff with jitter. fn must have no side effect outside the session."""
    settings = settings or get_settings()
    attempts = max(1, attempts if attempts is not None else settings.db_busy_retries)
    for attempt in range(1, attempts + 1):
        try:
            with session_scope(settings, readonly=readonly) as session:
                return fn(session)
        except DBAPIError as exc:
            if attempt >= attempts or not is_busy_error(exc):
                raise
            delay = backoff_seconds * 2 ** (attempt - 1) * (1 + random.random())
            log.warning("database busy (%s); attempt %s of %s again in %.2f s", exc.orig, attempt + 1, attempts, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def write_if_free(settings: Settings | None, fn: Callable[[Session], R], *, wait_seconds: float = 0.25) -> R | None:
    """Run fn(session) as a short unit of work if the database is free within `wait_seconds` (SQLite's write
    lock); None, with nothing done, when it stays busy. For writes that may be skipped (e.g. an idle clock)."""
    settings = settings or get_settings()
    engine = get_engine(settings)
    if engine.dialect.name != "sqlite":
        try:
            return run_in_transaction(settings, fn, attempts=1)
        except DBAPIError as exc:
            if is_busy_error(exc):
                return None
            raise
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.execute(f"PRAGMA busy_timeout={max(0, int(wait_seconds * 1000))}")
        conn.info[WRITE_LOCK_WAIT_KEY] = wait_seconds
        session = Session(bind=conn, expire_on_commit=False)
        try:
            result = fn(session)
            session.commit()
            return result
        except DBAPIError as exc:
            session.rollback()
            if is_busy_error(exc):
                return None
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
            conn.info.pop(WRITE_LOCK_WAIT_KEY, None)
            raw.execute(f"PRAGMA busy_timeout={int(settings.db_busy_timeout_seconds * 1000)}")


T = TypeVar("T")


def flush_pending(session: Session) -> None:
    """Flush the unit of work's pending ORM changes, as the ORM does before its own statements, before a Core
    statement that may refer to them (a row's foreign key) or should come after them (audit events' order)."""
    if session.autoflush and (session.new or session.dirty or session.deleted):
        session.flush()


def insert_ignore(session: Session, model: type, values: dict, *returning) -> Row | None:
    """INSERT one row unless one of its unique keys is taken (ON CONFLICT DO NOTHING, SQLite and PostgreSQL):
    the `returning` columns of the new row (default: its id), or None when a row with the same key exists. The
    unit of work's ORM machinery is skipped (no flush, no savepoint, no object): for hot paths. A concurrent
    insert of the same key makes PostgreSQL wait until that transaction ends, so None means "committed by
    another" or "already here". Other integrity errors (a foreign key) are raised as they are."""
    flush_pending(session)
    dialect = session.get_bind().dialect.name
    # On the session's connection: a Core statement needs none of the ORM's execution machinery.
    return session.connection().execute(_insert_ignore_statement(model.__table__, dialect, returning), values).first()


@functools.cache
def _insert_ignore_statement(table, dialect: str, returning: tuple):
    # Built once, values passed as parameters: building .values(...) per call cost more than the INSERT itself.
    dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return dialect_insert(table).on_conflict_do_nothing().returning(*(returning or (table.c.id,)))


def insert_once(session: Session, row: T, existing: Select[tuple[T]]) -> tuple[T, bool]:
    """Insert `row` unless `existing` finds one; (row, True) when inserted, (found, False) otherwise.

    The one way to insert by a unique key (payments, leads, accounts, contacts, decisions, deliveries...):
    `existing` selects by the key(s) the row's unique constraints hold (the best match first when several).
    When a concurrent transaction inserts first, our insert fails the constraint inside a savepoint (PostgreSQL
    makes it wait until the winner commits) and the winner's row is returned: a concurrent duplicate gets the
    same answer as a replay. An integrity error that no row explains (a foreign key, another constraint) is
    raised as it is.
    """
    found = session.scalars(existing).first()
    if found is not None:
        return found, False
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        found = session.scalars(existing).first()
        if found is None:
            raise
        return found, False
    return row, True
