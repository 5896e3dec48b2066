"""Real receivers on 127.0.0.1 for the alert tests: a webhook endpoint that checks signatures
and applies each idempotency key once, and an SMTP server that applies each Message-ID once.

Each can run a hook when a delivery arrives, before it answers: the exactly-once test uses it
to kill the sender between delivery and acknowledgement.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

SIGNATURE = "X-Creditwatch-Signature"


class Applied:
    """What a receiver got (every delivery) and applied (once per key)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: Counter[str] = Counter()
        self.applied: dict[str, Any] = {}
        self.on_delivery: Callable[[str], None] | None = None

    def receive(self, key: str, body: Any) -> None:
        with self.lock:
            self.received[key] += 1
            self.applied.setdefault(key, body)
        if self.on_delivery is not None:
            self.on_delivery(key)


@contextmanager
def webhook_receiver(
    secret: str, redirect_while: Callable[[], bool] = lambda: False
) -> Iterator[tuple[str, Applied]]:
    """``(url, applied)``; a request with a wrong signature gets 401 and is not applied, and
    while ``redirect_while()`` holds every request gets a 301 (a receiver that moved)."""
    applied = Applied()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if redirect_while():
                self.send_response(301)
                self.send_header("Location", "https://hooks.example.org/new-place")
                self.end_headers()
                return
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(self.headers.get(SIGNATURE, ""), expected):
                self.send_response(401)
                self.end_headers()
                return
            applied.receive(self.headers["Idempotency-Key"], json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", applied
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _SmtpHandler:
    def __init__(self, applied: Applied) -> None:
        self.applied = applied

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message: Message = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        self.applied.receive(message["Message-ID"], message)
        return "250 OK"


@contextmanager
def smtp_receiver() -> Iterator[tuple[int, Applied]]:
    """``(port, applied)``: messages applied once per Message-ID."""
    applied = Applied()
    port = free_port()
    controller = Controller(_SmtpHandler(applied), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, applied
    finally:
        controller.stop()
