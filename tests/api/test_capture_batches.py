"""Lead posts that arrive together are captured in one transaction (api.capture_batches), each answered only once
its batch has committed; a post that fails is answered with its own error and takes no other post with it."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import func, select

from api.capture_batches import BatchWriter
from core.models import Job, Lead
from core.schemas import LeadCreate
from crm.capture import capture
from tests.factories import lead_payload


def _writer(settings, fail_on: str | None = None, gate: threading.Event | None = None, concurrent_batches: int = 1):
    transactions: list = []  # the sessions (kept, so no two share an id)

    def write(session, data: LeadCreate, actor: str, key: str | None):
        if gate is not None:
            gate.wait(5)  # the first batch is held until every post is queued, so the rest make one batch
        if not any(seen is session for seen in transactions):
            transactions.append(session)
        if data.email == fail_on:
            raise ValueError(f"refused {data.email}")
        return capture(session, data, actor=actor, idempotency_key=key, settings=settings)

    writer = BatchWriter(settings, write)
    writer.concurrent_batches = concurrent_batches  # one batch at a time (SQLite's default) unless a test says
    return writer, transactions


def _post(email: str) -> LeadCreate:
    return LeadCreate.model_validate(lead_payload(email=email))


def _stored(settings) -> tuple[set[str], int]:
    from core.db import session_scope

    with session_scope(settings, readonly=True) as session:
        return set(session.scalars(select(Lead.email))), session.scalar(select(func.count(Job.id)))


def test_posts_queued_while_a_batch_is_written_share_one_transaction_and_each_gets_its_own_answer(settings):
    gate = threading.Event()
    writer, transactions = _writer(settings, gate=gate)

    async def run():
        first = asyncio.create_task(writer.submit(_post("first@acme-software.com"), "test", None))
        await asyncio.sleep(0.05)  # the first post's batch is being written (held at the gate)
        rest = [
            asyncio.create_task(writer.submit(_post(f"p{i}@acme-software.com"), "test", f"key-{i}")) for i in range(10)
        ]
        rest.append(asyncio.create_task(writer.submit(_post("p3@acme-software.com"), "test", None)))  # p3 again
        await asyncio.sleep(0.05)
        gate.set()
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(run())
    assert len(transactions) == 2  # the first post alone, then the twelve queued behind it in one
    assert first.duplicate is False
    assert [r.duplicate for r in rest[:10]] == [False] * 10
    assert rest[10].duplicate is True and rest[10].id == rest[3].id  # the same email later in the same batch
    assert len({r.id for r in rest[:10]} | {first.id}) == 11
    emails, jobs = _stored(settings)
    assert emails == {"first@acme-software.com"} | {f"p{i}@acme-software.com" for i in range(10)}
    assert jobs == 11  # one lead.run job per new lead


def test_a_failing_post_gets_its_own_error_and_the_rest_of_its_batch_is_stored(settings):
    gate = threading.Event()
    writer, transactions = _writer(settings, fail_on="bad@acme-software.com", gate=gate)

    async def run():
        first = asyncio.create_task(writer.submit(_post("first@acme-software.com"), "test", None))
        await asyncio.sleep(0.05)
        batch = [
            asyncio.create_task(writer.submit(_post(email), "test", None))
            for email in ("a@acme-software.com", "bad@acme-software.com", "b@acme-software.com")
        ]
        await asyncio.sleep(0.05)
        gate.set()
        await first
        return await asyncio.gather(*batch, return_exceptions=True)

    a, bad, b = asyncio.run(run())
    assert isinstance(bad, ValueError) and "bad@acme-software.com" in str(bad)
    assert a.duplicate is False and b.duplicate is False
    emails, jobs = _stored(settings)
    assert emails == {"first@acme-software.com", "a@acme-software.com", "b@acme-software.com"}
    assert jobs == 3
    # the batch's transaction was rolled back, then each post written in a transaction of its own
    assert len(transactions) == 1 + 1 + 3


def test_a_lone_post_is_written_at_once_as_a_batch_of_one(settings):
    writer, transactions = _writer(settings)
    answer = asyncio.run(writer.submit(_post("alone@acme-software.com"), "test", "k"))
    assert answer.duplicate is False and len(transactions) == 1
    again = asyncio.run(writer.submit(_post("alone@acme-software.com"), "test", "k"))
    assert again.duplicate is True and again.id == answer.id


@pytest.mark.parametrize("posts", [3])
def test_a_database_error_for_the_whole_batch_reaches_every_post(settings, posts, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("database gone")

    writer = BatchWriter(settings, broken)

    async def run():
        return await asyncio.gather(
            *(writer.submit(_post(f"x{i}@acme-software.com"), "test", None) for i in range(posts)),
            return_exceptions=True,
        )

    answers = asyncio.run(run())
    assert all(isinstance(a, RuntimeError) for a in answers) and len(answers) == posts
    assert _stored(settings) == (set(), 0)


def test_several_batches_in_flight_answer_every_post_once(settings):
    """Batches written at once (two API processes, or a writer allowed several): repeats across batches still find
    one lead."""
    writer, transactions = _writer(settings, concurrent_batches=4)

    async def run():
        posts = [writer.submit(_post(f"c{i % 30}@acme-software.com"), "test", None) for i in range(90)]
        return await asyncio.gather(*posts)

    answers = asyncio.run(run())
    by_email: dict[int, set[int]] = {}
    for i, answer in enumerate(answers):
        by_email.setdefault(i % 30, set()).add(answer.id)
    assert all(len(ids) == 1 for ids in by_email.values())  # each address: one lead, whichever batch
    assert sum(not a.duplicate for a in answers) == 30 and sum(a.duplicate for a in answers) == 60
    emails, jobs = _stored(settings)
    assert len(emails) == 30 and jobs == 30
