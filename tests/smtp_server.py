"""A real SMTP server (aiosmtpd) for tests, with the failures a mail provider shows: recipients refused
with a 5xx, a DATA reply held back (to kill a worker while it waits), or simply down."""

from __future__ import annotations

import asyncio
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

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
    """`with SmtpServer() as smtp:` serves on smtp.url until the block ends; stop()/start() simulate an outage.
    With credentials=(user, password) it asks for a login (AUTH PLAIN/LOGIN, over plain text: a test server)."""

    def __init__(self, port: int | None = None, credentials: tuple[str, str] | None = None) -> None:
        self.inbox = Inbox()
        self.port = port or free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.credentials = credentials
        self.controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 235 or 535 itself

    def start(self) -> SmtpServer:
        login = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        self.controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, **(login if self.credentials else {})
        )
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
