"""Channels deliver to real receivers started here, on 127.0.0.1 only: an aiosmtpd SMTP
server (plain, and STARTTLS with a certificate made for the test), an HTTP receiver that
checks webhook signatures and keeps idempotency keys, apprise's json:// against the same
receiver, and Atom files read back with feedparser."""

from __future__ import annotations

import datetime as dt
import email
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import feedparser
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alerts.channels import (
    ATOM_NS,
    AppriseChannel,
    ChannelError,
    EmailChannel,
    FeedChannel,
    WebhookChannel,
    entry_id,
    parse_channel,
    write_atom,
)
from alerts.messages import event_message, sample_message
from alerts.model import AlertMessage
from tests.test_alert_messages import HOSTILE, URL, matched

SECRET = "s3cret-for-tests"
SMTP_ENV = (
    "CREDITWATCH_SMTP_HOST",
    "CREDITWATCH_SMTP_PORT",
    "CREDITWATCH_SMTP_USER",
    "CREDITWATCH_SMTP_PASSWORD",
    "CREDITWATCH_SMTP_STARTTLS",
    "CREDITWATCH_SMTP_FROM",
    "CREDITWATCH_SMTP_CAFILE",
    "CREDITWATCH_WEBHOOK_SECRET",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, netguard: Path) -> None:
    """No configuration leaks in from the shell; non-loopback network use fails the test."""
    for name in SMTP_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def alert() -> AlertMessage:
    return event_message(matched(), subscription_id="xm-desk", language="zh", key="xm-desk:ev-1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- an HTTP receiver --------------------------------------------------------------------------


@dataclass
class Receiver:
    """What the HTTP receiver saw, and what it answers next."""

    secret: str | None = None  # when set, a wrong signature is answered 401
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # idempotency keys applied, once each
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = state.status
            if state.secret is not None:
                expected = (
                    "sha256=" + hmac.new(state.secret.encode(), body, hashlib.sha256).hexdigest()
                )
                given = self.headers.get("X-Creditwatch-Signature", "")
                if not hmac.compare_digest(expected, given):
                    status = 401
            key = self.headers.get("Idempotency-Key")
            if 200 <= status < 300 and key and key not in state.applied:
                state.applied.append(key)
            self.send_response(status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# -- parsing -----------------------------------------------------------------------------------


def test_specs_parse_to_their_channels(tmp_path: Path) -> None:
    mail = parse_channel("email: desk@example.org, ops@example.org ,desk@example.org")
    assert isinstance(mail, EmailChannel) and mail.kind == "email" and mail.exactly_once
    assert mail.addresses == ("desk@example.org", "ops@example.org")
    hook = parse_channel("webhook:https://hooks.example.org/cw?team=1#secret_env=XM_SECRET")
    assert isinstance(hook, WebhookChannel) and hook.exactly_once
    assert hook.url == "https://hooks.example.org/cw?team=1" and hook.secret_env == "XM_SECRET"
    assert parse_channel("webhook:http://127.0.0.1:9/x").secret_env == "CREDITWATCH_WEBHOOK_SECRET"
    feed = parse_channel(f"feed:{tmp_path / 'alerts.xml'}")
    assert isinstance(feed, FeedChannel) and feed.kind == "feed"
    for url in ("json://127.0.0.1:9/hook", "ntfy://creditwatch-test", "dingtalk://token123/"):
        service = parse_channel(url)
        assert isinstance(service, AppriseChannel) and service.kind == "apprise"
        assert not service.exactly_once and service.spec == url


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "empty"),
        ("email:", "at least one address"),
        ("email:desk", "not an email address"),
        ("email:a@b@c.org", "not an email address"),
        ("email:desk@example.org\r\nBcc: x@example.org", "not an email address"),
        ("webhook:ftp://example.org/x", "http(s) URL"),
        ("webhook:https://example.org/x#secret=abc", "unknown webhook option"),
        ("webhook:https://example.org/x#secret_env=1BAD", "environment variable"),
        ("feed:", "file path"),
        ("desk@example.org", "not a channel"),
        ("nosuchservice://token", "apprise cannot use"),
    ],
)
def test_bad_specs_are_refused_clearly(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_channel(spec)
    assert says in str(info.value)


def test_a_bad_apprise_url_is_not_echoed() -> None:
    with pytest.raises(ValueError) as info:
        parse_channel("slack://T1/secret-token-value")
    assert "secret-token-value" not in str(info.value)
    assert "slack://" in str(info.value)


# -- email -------------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler keeping every message; refuses recipients at refused.example."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 queued as TEST1"


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("CREDITWATCH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CREDITWATCH_SMTP_PORT", str(port))
    monkeypatch.setenv("CREDITWATCH_SMTP_STARTTLS", "0")  # production relays use STARTTLS
    monkeypatch.setenv("CREDITWATCH_SMTP_FROM", "creditwatch@example.org")
    try:
        yield inbox
    finally:
        controller.stop()


def received(inbox: Inbox, index: int = 0) -> EmailMessage:
    content = inbox.envelopes[index].original_content or inbox.envelopes[index].content
    assert isinstance(content, bytes)
    parsed = email.message_from_bytes(content, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_email_arrives_with_both_parts_and_a_stable_message_id(
    smtp_server: Inbox, alert: AlertMessage
) -> None:
    channel = parse_channel("email:desk@example.org,ops@example.org")
    receipt = channel.deliver(alert)
    assert "250" in receipt and "queued as TEST1" in receipt
    envelope = smtp_server.envelopes[0]
    assert envelope.mail_from == "creditwatch@example.org"
    assert envelope.rcpt_tos == ["desk@example.org", "ops@example.org"]
    mail = received(smtp_server)
    assert mail["Subject"] == "[creditwatch] 列入 信用公示（警示信息）: 厦门某某旅行社有限公司"
    assert mail["Message-ID"] == "<xm-desk%3Aev-1@creditwatch>"
    assert mail["Date"] and mail["X-Creditwatch-Key"] == "xm-desk:ev-1"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",))
    page = mail.get_body(("html",))
    assert text is not None and page is not None
    # mail bodies travel in canonical CRLF form; the words are the message's own
    assert text.get_content().replace("\r\n", "\n") == alert.text
    assert alert.html in page.get_content().replace("\r\n", "\n")
    # a redelivery carries the same Message-ID, so the receiver can drop it
    channel.deliver(alert)
    assert received(smtp_server, 1)["Message-ID"] == mail["Message-ID"]


def test_email_with_a_hostile_subject_stays_one_header(smtp_server: Inbox) -> None:
    item = matched(name=HOSTILE)
    alert = event_message(item, subscription_id="s", language="en", key="k")
    parse_channel("email:desk@example.org").deliver(alert)
    mail = received(smtp_server)
    assert mail["Bcc"] is None
    assert "\n" not in str(mail["Subject"]) and "<script>" in str(mail["Subject"])
    assert smtp_server.envelopes[0].rcpt_tos == ["desk@example.org"]


def test_email_refusals_and_outages_say_whether_to_retry(
    smtp_server: Inbox, alert: AlertMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ChannelError) as refused:
        parse_channel("email:nobody@refused.example").deliver(alert)
    assert not refused.value.retryable and "550" in str(refused.value)

    partly = parse_channel("email:desk@example.org,nobody@refused.example").deliver(alert)
    assert "refused: nobody@refused.example" in partly

    monkeypatch.setenv("CREDITWATCH_SMTP_PORT", str(free_port()))  # nobody listens
    with pytest.raises(ChannelError) as down:
        parse_channel("email:desk@example.org").deliver(alert)
    assert down.value.retryable

    monkeypatch.delenv("CREDITWATCH_SMTP_HOST")
    with pytest.raises(ChannelError, match="CREDITWATCH_SMTP_HOST") as unset:
        parse_channel("email:desk@example.org").deliver(alert)
    assert not unset.value.retryable


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, the certificate being its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "creditwatch test relay")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_email_over_starttls_with_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alert: AlertMessage
) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"pw", handled=False)  # server sends 535

    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
    )
    controller.start()
    try:
        monkeypatch.setenv("CREDITWATCH_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("CREDITWATCH_SMTP_PORT", str(port))
        monkeypatch.setenv("CREDITWATCH_SMTP_CAFILE", str(cert))
        monkeypatch.setenv("CREDITWATCH_SMTP_USER", "bot@example.org")
        monkeypatch.setenv("CREDITWATCH_SMTP_PASSWORD", "pw")
        receipt = parse_channel("email:desk@example.org").deliver(alert)
        assert "250" in receipt
        assert logins == [(b"bot@example.org", b"pw")]
        assert inbox.envelopes[0].mail_from == "bot@example.org"  # the user is the sender

        monkeypatch.setenv("CREDITWATCH_SMTP_PASSWORD", "wrong")
        with pytest.raises(ChannelError) as bad_login:
            parse_channel("email:desk@example.org").deliver(alert)
        assert not bad_login.value.retryable and "535" in str(bad_login.value)

        monkeypatch.delenv("CREDITWATCH_SMTP_CAFILE")  # the test CA is not trusted
        with pytest.raises(ChannelError, match="CERTIFICATE_VERIFY_FAILED"):
            parse_channel("email:desk@example.org").deliver(alert)
    finally:
        controller.stop()


# -- webhook -----------------------------------------------------------------------------------


def test_webhook_is_signed_keyed_and_applied_once(
    receiver: Receiver, alert: AlertMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITWATCH_WEBHOOK_SECRET", SECRET)
    receiver.secret = SECRET
    channel = parse_channel(f"webhook:{receiver.url}/hook")
    assert channel.deliver(alert) == "HTTP 200"
    assert channel.deliver(alert) == "HTTP 200"  # a redelivery
    assert receiver.applied == ["xm-desk:ev-1"]
    request = receiver.requests[0]
    assert request["path"] == "/hook"
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == "xm-desk:ev-1"
    assert abs(int(headers["X-Creditwatch-Timestamp"]) - dt.datetime.now(dt.UTC).timestamp()) < 60
    assert json.loads(request["body"]) == alert.data
    assert receiver.requests[1]["body"] == request["body"]  # same key, same bytes


def test_webhook_secret_per_channel_and_a_wrong_secret(
    receiver: Receiver, alert: AlertMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.secret = SECRET
    monkeypatch.setenv("XM_HOOK_SECRET", SECRET)
    monkeypatch.setenv("CREDITWATCH_WEBHOOK_SECRET", "not-the-secret")
    own = parse_channel(f"webhook:{receiver.url}/hook#secret_env=XM_HOOK_SECRET")
    assert own.deliver(alert) == "HTTP 200"
    assert receiver.requests[-1]["path"] == "/hook"  # the fragment is not sent

    with pytest.raises(ChannelError) as rejected:
        parse_channel(f"webhook:{receiver.url}/hook").deliver(alert)
    assert not rejected.value.retryable and "HTTP 401" in str(rejected.value)
    assert receiver.applied == ["xm-desk:ev-1"]

    monkeypatch.delenv("CREDITWATCH_WEBHOOK_SECRET")
    with pytest.raises(ChannelError, match="CREDITWATCH_WEBHOOK_SECRET is not set") as unset:
        parse_channel(f"webhook:{receiver.url}/hook").deliver(alert)
    assert not unset.value.retryable


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (408, True), (429, True), (400, False), (404, False), (410, False)],
)
def test_webhook_statuses_say_whether_to_retry(
    receiver: Receiver,
    alert: AlertMessage,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    retryable: bool,
) -> None:
    monkeypatch.setenv("CREDITWATCH_WEBHOOK_SECRET", SECRET)
    receiver.status = status
    receiver.headers = {"Retry-After": "7"} if status == 429 else {}
    with pytest.raises(ChannelError) as info:
        parse_channel(f"webhook:{receiver.url}/hook").deliver(alert)
    assert info.value.retryable is retryable
    assert f"HTTP {status}" in str(info.value)
    assert info.value.retry_after == (7.0 if status == 429 else None)


def test_webhook_unreachable_is_retryable(
    alert: AlertMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITWATCH_WEBHOOK_SECRET", SECRET)
    with pytest.raises(ChannelError) as info:
        parse_channel(f"webhook:http://127.0.0.1:{free_port()}/hook").deliver(alert)
    assert info.value.retryable


def test_webhook_hostile_name_arrives_exactly(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITWATCH_WEBHOOK_SECRET", SECRET)
    receiver.secret = SECRET
    alert = event_message(
        matched(name=HOSTILE), subscription_id="s", language="en", key="k\r\nX: 1"
    )
    assert parse_channel(f"webhook:{receiver.url}/hook").deliver(alert) == "HTTP 200"
    request = receiver.requests[0]
    assert json.loads(request["body"])["events"][0]["entity_name"] == HOSTILE
    assert "X" not in request["headers"]  # the key cannot add a header


# -- apprise -----------------------------------------------------------------------------------


def test_apprise_json_gets_title_and_markdown_body(receiver: Receiver, alert: AlertMessage) -> None:
    channel = parse_channel(f"json://127.0.0.1:{receiver.url.rsplit(':', 1)[1]}/apprise")
    receipt = channel.deliver(alert)
    assert receipt.startswith("apprise json://") and receipt.endswith("sent")
    request = receiver.requests[0]
    assert request["path"] == "/apprise"
    payload = json.loads(request["body"])
    assert payload["title"] == alert.subject
    assert payload["message"] == alert.markdown.rstrip()  # apprise trims the trailing newline
    assert "xm-desk:ev-1" in payload["message"]  # the key travels in the body


def test_apprise_failure_is_retryable(receiver: Receiver, alert: AlertMessage) -> None:
    receiver.status = 500
    channel = parse_channel(f"json://127.0.0.1:{receiver.url.rsplit(':', 1)[1]}/apprise")
    with pytest.raises(ChannelError) as info:
        channel.deliver(alert)
    assert info.value.retryable


def test_apprise_does_not_read_emoji_codes_in_names(receiver: Receiver) -> None:
    alert = event_message(matched(name="火:fire:公司"), subscription_id="s", language="en", key="k")
    channel = parse_channel(f"json://127.0.0.1:{receiver.url.rsplit(':', 1)[1]}/apprise")
    channel.deliver(alert)
    payload = json.loads(receiver.requests[0]["body"])
    assert "火:fire:公司" in payload["title"] and "🔥" not in payload["message"]


# -- Atom feed ---------------------------------------------------------------------------------


def atom_entries(path: Path) -> list[ET.Element]:
    return ET.parse(path).getroot().findall(f"{{{ATOM_NS}}}entry")


def test_feed_replaces_an_entry_with_the_same_key(tmp_path: Path, alert: AlertMessage) -> None:
    path = tmp_path / "out" / "alerts.xml"
    channel = parse_channel(f"feed:{path}")
    assert channel.deliver(alert).endswith("entry added")
    assert channel.deliver(alert).endswith("entry replaced")
    other = event_message(
        matched("relisted", name="厦门另一家旅行社有限公司"),
        subscription_id="xm-desk",
        language="zh",
        key="xm-desk:ev-2",
    )
    channel.deliver(other)
    assert [e.findtext(f"{{{ATOM_NS}}}id") for e in atom_entries(path)] == [
        entry_id("xm-desk:ev-2"),
        entry_id("xm-desk:ev-1"),
    ]
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [e.id for e in parsed.entries] == [
        "urn:creditwatch:alert:xm-desk%3Aev-2",
        "urn:creditwatch:alert:xm-desk%3Aev-1",
    ]
    assert parsed.entries[1].title == alert.subject
    assert parsed.entries[1].updated == "2025-11-22T02:00:00+00:00"  # the event's time
    links = {link.rel: link.href for link in parsed.entries[1].links}
    assert links == {
        "alternate": "http://127.0.0.1:8000/entities/uscc%3A91350200MA31K8W2P4",
        "related": URL,
    }
    assert "厦门某某旅行社有限公司" in parsed.entries[1].content[0].value


def test_feed_keeps_hostile_text_inert(tmp_path: Path) -> None:
    alert = event_message(matched(name=HOSTILE), subscription_id="s", language="en", key="k")
    path = tmp_path / "alerts.xml"
    parse_channel(f"feed:{path}").deliver(alert)
    raw = path.read_bytes()
    assert b"<script" not in raw and b"\x00" not in raw
    (entry,) = atom_entries(path)
    content = entry.find(f"{{{ATOM_NS}}}content")
    assert content is not None and content.get("type") == "html"
    assert content.text == alert.html  # escaped HTML, as the message made it
    assert entry.findtext(f"{{{ATOM_NS}}}title") == alert.subject
    parsed = feedparser.parse(raw)
    assert not parsed.bozo
    assert "\n" not in parsed.entries[0].title


def test_feed_refuses_to_overwrite_a_file_that_is_not_atom(
    tmp_path: Path, alert: AlertMessage
) -> None:
    path = tmp_path / "notes.xml"
    path.write_text("<notes>mine</notes>")
    with pytest.raises(ChannelError, match="not an Atom feed") as info:
        parse_channel(f"feed:{path}").deliver(alert)
    assert not info.value.retryable
    assert path.read_text() == "<notes>mine</notes>"


def test_write_atom_is_a_valid_feed() -> None:
    messages = [sample_message("zh"), sample_message("en"), replace(sample_message("en"), data={})]
    updated = dt.datetime(2025, 11, 23, 8, 0, tzinfo=dt.UTC)
    raw = write_atom(
        messages[:2], feed_id="urn:creditwatch:feed:xm-desk", title="xm-desk", updated=updated
    )
    parsed = feedparser.parse(raw)
    assert not parsed.bozo
    assert parsed.feed.id == "urn:creditwatch:feed:xm-desk" and parsed.feed.title == "xm-desk"
    assert parsed.feed.updated == "2025-11-23T08:00:00+00:00"
    assert [e.id for e in parsed.entries] == [
        "urn:creditwatch:alert:sample-zh",
        "urn:creditwatch:alert:sample-en",
    ]
    assert parsed.entries[0].content[0].type == "text/html"
    bare = feedparser.parse(write_atom(messages[2:], feed_id="urn:x", title="x", updated=updated))
    assert bare.entries[0].updated == "2025-11-23T08:00:00+00:00"  # no time of its own
