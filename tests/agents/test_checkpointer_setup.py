"""Workers started together on a fresh database each set the checkpointer up without tripping over the others."""

from __future__ import annotations

import threading

from agents.runtime import open_checkpointer
from core.settings import Settings


def test_four_workers_open_the_checkpointer_of_a_fresh_database_at_once(scratch_database_url, tmp_path):
    url = scratch_database_url
    checkpoints = url if url.startswith("postgresql") else f"sqlite:///{tmp_path / 'checkpoints.sqlite'}"
    settings = Settings(var_dir=tmp_path, database_url=url, checkpoint_url=checkpoints)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            with open_checkpointer(settings) as saver:
                assert saver.get_tuple({"configurable": {"thread_id": "none"}}) is None
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
