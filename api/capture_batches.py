"""Lead posts written in batches: one transaction and one thread hand-off for the posts that arrive together.

Measured with bench/bench_ingest.py (50 clients, SQLite): after capture itself went to Core statements, what was
left of a post's CPU was mostly per-transaction and per-hand-off work (BEGIN, COMMIT, waking a pool thread and
handing the GIL back and forth). Posts now queue on the event loop; one batch at a time is written in the thread
pool, and the posts that arrive while it is written make the next batch. A lone post is a batch of one, written
at once: nothing waits for a batch to fill.

Nothing is answered before its batch commits (a 202 means stored). A post that fails does not take the others
with it: when a batch's transaction fails, each of its posts is written again in a transaction of its own, so
the others are stored and the failing one gets its own error (on PostgreSQL a post the database found busy, e.g.
a deadlock with another API process, is tried again first). The posts of one batch see each other (the same
email twice in one batch is a repeat of the first), as they would one after the other.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from core.db import run_in_transaction, session_scope
from core.settings import Settings

log = logging.getLogger("revloop.api")

MAX_BATCH = 64  # posts in one transaction: bounds how long one transaction holds the write lock


@dataclass
class _LoopQueue:
    pending: list[tuple[tuple[Any, ...], asyncio.Future]] = field(default_factory=list)
    writing: int = 0  # batches being written


class BatchWriter:
    """Runs `write(session, *args)` for each submitted post, batched in transactions of up to MAX_BATCH."""

    def __init__(self, settings: Settings, write: Callable[..., Any]):
        self.settings, self.write = settings, write
        # One batch in flight per process. Several at once on PostgreSQL deadlocked (two batches inserting the
        # same new company domains and repeated emails in different orders): each deadlock cost PostgreSQL's 1 s
        # deadlock_timeout and a few 503s in bench/bench_ingest.py, for no gain in accepted/s.
        self.concurrent_batches = 1
        # A post written alone after its batch failed is retried when the database is busy (a deadlock with
        # another API process's batch, a serialization failure) on PostgreSQL; SQLite's busy timeout has already
        # waited 15 s by then.
        self.single_attempts = 1 if settings.resolved_database_url.startswith("sqlite") else settings.db_busy_retries
        # One queue per event loop (an app served by uvicorn has one; tests may drive one app from several).
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue] = weakref.WeakKeyDictionary()

    async def submit(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _LoopQueue()
        future = loop.create_future()
        queue.pending.append((args, future))
        if queue.writing < self.concurrent_batches:
            queue.writing += 1
            loop.create_task(self._drain(queue))
        return await future

    async def _drain(self, queue: _LoopQueue) -> None:
        try:
            while queue.pending:
                batch, queue.pending = queue.pending[:MAX_BATCH], queue.pending[MAX_BATCH:]
                try:
                    results = await anyio.to_thread.run_sync(self._write_batch, [args for args, _ in batch])
                except BaseException as exc:  # noqa: BLE001 - handed to every post of the batch
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # the client went away; its lead is stored all the same
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            queue.writing -= 1
            if queue.pending and not queue.writing:  # cancelled (the loop is closing): fail what is left, never drop
                for _, future in queue.pending:
                    if not future.done():
                        future.set_exception(RuntimeError("the API is shutting down; post again"))
                queue.pending.clear()

    def _write_batch(self, batch: list[tuple[Any, ...]]) -> list[Any]:
        if len(batch) > 1:
            try:
                with session_scope(self.settings) as session:
                    return [self.write(session, *args) for args in batch]
            except Exception as exc:  # noqa: BLE001 - each post is written alone below, with its own outcome
                log.info("a batch of %s lead posts failed (%s); writing them one by one", len(batch), exc)
        results: list[Any] = []
        for args in batch:
            try:
                results.append(
                    run_in_transaction(
                        self.settings,
                        lambda session, args=args: self.write(session, *args),
                        attempts=self.single_attempts,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - this post's answer
                results.append(exc)
        return results
