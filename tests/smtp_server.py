"""A real SMTP server (aiosmtpd) for tests, with the failures a mail provider shows: recipients refused
with a 5xx, a DATA reply held back (to kill a worker while it waits), or simply down."""

from __future__ import annotations

import asyncio
import threading

from aiosmtpd.controller import Controller

from tests.conftest import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse_recipients: str | None = None  # e.g. "550 5.1.1 no such user"
        self.hold_data_seconds = 0.0
        self.data_started = threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_recipients:
            return self.refuse_recipients
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        # The provider has the message from here on, whether or not the client lives to read the reply.
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        self.data_started.set()
        if self.hold_data_seconds:
            await asyncio.sleep(self.hold_data_seconds)
        return "250 OK"


class SmtpServer:
    """`with SmtpServer() as smtp:` serves on smtp.url until the block ends; stop()/start() simulate an outage."""

    def __init__(self, port: int | None = None) -> None:
        self.inbox = Inbox()
        self.port = port or free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.controller: Controller | None = None

    def start(self) -> SmtpServer:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
