"""Delivery channels: where an ``AlertMessage`` goes, and how a failure is reported.

A subscription names its channels as strings; ``parse_channel`` turns one into a ``Channel``
(checking its syntax, never the network or the environment, so subscriptions can be
validated anywhere) and ``Channel.deliver`` sends a message, returning a short receipt or
raising ``ChannelError`` whose ``retryable`` tells the sender whether trying again can help.
``ConfigError``, a ``ChannelError``, says the channel is set up wrongly (a missing secret or
SMTP relay, a redirecting or refusing receiver, an unreadable setting): no alert can go out
until someone fixes it, and every one can after, so the sender holds its alerts, untried.

Channel specs
-------------
``email:ADDRESS[,ADDRESS…]``
    One email to all addresses over SMTP: multipart/alternative (text and HTML), UTF-8
    headers (the subject one line, encoded whole, so no scraped text in it can pass for an
    RFC 2047 encoded-word), ``Message-ID: <KEY@creditwatch>`` (the alert key,
    with characters outside RFC 5322 atext percent-encoded), so a receiver can drop a
    redelivery. Environment:

    * ``CREDITWATCH_SMTP_HOST`` (required), ``CREDITWATCH_SMTP_PORT`` (587)
    * ``CREDITWATCH_SMTP_USER`` / ``CREDITWATCH_SMTP_PASSWORD``: log in only when set
    * ``CREDITWATCH_SMTP_STARTTLS``: ``1`` (default; production relays must use it) or ``0``
      for a local relay or test server
    * ``CREDITWATCH_SMTP_CAFILE``: a CA bundle to verify the relay with (an internal CA);
      the system store otherwise
    * ``CREDITWATCH_SMTP_FROM``: the sender (else the user when it is an address, else
      ``creditwatch@localhost``)
    * ``CREDITWATCH_SMTP_TIMEOUT``: seconds (30)

``webhook:https://HOST/PATH[#secret_env=NAME]`` (or ``http://``)
    POST of ``message.data`` as JSON with ``Idempotency-Key: KEY``,
    ``X-Creditwatch-Timestamp`` (Unix seconds) and ``X-Creditwatch-Signature:
    sha256=HEX``, the HMAC-SHA256 of the exact body bytes under the secret from
    ``CREDITWATCH_WEBHOOK_SECRET``, or from the variable ``NAME`` given in the fragment (the
    fragment is never sent). 2xx is delivered; 408, 429, 5xx and network errors are
    retryable; 3xx (redirects are not followed: give the final URL), 401 and 403 (the
    receiver refused the signature: check the secret) are configuration errors; other
    statuses are not retryable.
    ``CREDITWATCH_WEBHOOK_TIMEOUT``: seconds (15). The signature covers the body only, as
    receivers expect; the timestamp is informational.

``feed:PATH``
    The message becomes an Atom entry (id ``urn:creditwatch:alert:KEY``, ``alternate`` link
    to the web app's page of the entity) in the file PATH, newest first; an entry with the
    same id is replaced, so a redelivery changes nothing. The file keeps its newest
    ``FEED_MAX_ENTRIES`` entries, is titled after the subscription (``feed_title``) and is
    replaced atomically, mode 0644 whatever the umask (a web server publishes it).
    ``write_atom`` writes a whole feed (``creditwatch feed``).

anything else
    An apprise URL (``json://``, ``slack://``, ``tgram://``, ``dingtalk://``,
    ``wecombot://``, ``feishu://``, ``matrix://``, ``ntfy://`` …), checked by apprise when
    parsed. The body is Markdown where the service takes it, else HTML or text; the title
    is the subject; the key is always in the body. Apprise services cannot deduplicate, so
    these are at-least-once. ``CREDITWATCH_APPRISE_TIMEOUT``: seconds (60).

``exactly_once`` is True for email and webhooks, whose receivers can deduplicate by key, and
for feeds, which replace by key; False for apprise.
"""

from __future__ import annotations

import email.utils
import fcntl
import hashlib
import hmac
import html
import json
import os
import re
import smtplib
import ssl
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from alerts.messages import one_line, web_url
from alerts.model import AlertMessage

FEED_MAX_ENTRIES = 500
ATOM_NS = "http://www.w3.org/2005/Atom"
ET.register_namespace("", ATOM_NS)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class ChannelError(Exception):
    """Delivery failed; the message says why, ``retryable`` whether a later try can succeed."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after  # seconds the receiver asked us to wait, if it did


class ConfigError(ChannelError):
    """The channel's configuration is wrong: retrying cannot help until it is fixed, and
    then it will, so this is not a failed delivery (the sender keeps the alerts queued)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@runtime_checkable
class Channel(Protocol):
    spec: str
    kind: str
    exactly_once: bool

    def deliver(self, message: AlertMessage) -> str: ...


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _body_text(message: AlertMessage) -> str:
    """The text body, with the key named in it when the renderer did not."""
    return message.text if message.key in message.text else f"{message.text}\nkey: {message.key}\n"


# -- email -------------------------------------------------------------------------------------


def message_id(key: str) -> str:
    """``<KEY@creditwatch>``, stable per key; bytes outside RFC 5322 atext percent-encoded."""
    local = quote(key, safe="-_!#$&'*+/=?^`{|}~").replace(".", "%2E")
    return f"<{local}@creditwatch>"


def subject_header(value: str) -> str:
    """The Subject header as sent: one line of text, encoded whole as RFC 2047 UTF-8
    encoded-words folded under 78 columns. Left to the email library, a scraped name holding
    ``=?utf-8?b?PHNjcmlwdD4=?=`` is taken for an encoded-word and arrives as ``<script>``, and
    its folding mangles long subjects with such text; encoded whole, any text arrives exactly."""
    return Header(one_line(value), "utf-8", header_name="Subject").encode(linesep="\n")


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP that keeps the server's answer to DATA, for the receipt."""

    last_data: tuple[int, bytes] | None = None

    def data(self, msg: Any) -> tuple[int, bytes]:
        reply = super().data(msg)
        self.last_data = reply
        return reply


def _smtp_error(exc: Exception, where: str) -> ChannelError:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        return ConfigError(
            f"{where}: {exc.smtp_code} {text}".rstrip()
            + ": login refused (check CREDITWATCH_SMTP_USER / CREDITWATCH_SMTP_PASSWORD)"
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ConfigError(f"{where}: {exc} (check CREDITWATCH_SMTP_STARTTLS and the login)")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(
            f"{rcpt}: {code} {msg.decode(errors='replace')}"
            for rcpt, (code, msg) in exc.recipients.items()
        )
        return ChannelError(
            f"{where}: all recipients refused: {detail}",
            retryable=any(400 <= c < 500 for c in codes),
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        return ChannelError(
            f"{where}: {exc.smtp_code} {text}".rstrip(),
            retryable=not 500 <= exc.smtp_code < 600,
        )
    return ChannelError(f"{where}: {type(exc).__name__}: {exc}", retryable=True)


@dataclass
class EmailChannel:
    """SMTP delivery to a fixed list of addresses (``email:a@x,b@y``)."""

    spec: str
    addresses: tuple[str, ...]
    kind: str = "email"
    exactly_once: bool = True

    def build(
        self, message: AlertMessage, *, sender: str, now: datetime | None = None
    ) -> EmailMessage:
        """The email for ``message``: text and HTML alternatives, stable Message-ID."""
        msg = EmailMessage(policy=SMTP)
        msg.set_raw("Subject", subject_header(message.subject))  # written as encoded
        msg["From"] = sender
        msg["To"] = ", ".join(self.addresses)
        msg["Date"] = email.utils.format_datetime(now or datetime.now(UTC))
        msg["Message-ID"] = message_id(message.key)
        msg["X-Creditwatch-Key"] = one_line(message.key)
        msg["Auto-Submitted"] = "auto-generated"
        msg["Content-Language"] = "zh-CN" if message.language == "zh" else message.language
        msg.set_content(_body_text(message), charset="utf-8")
        page = (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f"<title>{html.escape(one_line(message.subject))}</title></head>"
            f"<body>\n{message.html}</body></html>\n"
        )
        msg.add_alternative(page, subtype="html", charset="utf-8")
        return msg

    def deliver(self, message: AlertMessage) -> str:
        host = _env("CREDITWATCH_SMTP_HOST")
        if host is None:
            raise ConfigError(
                f"{self.spec}: CREDITWATCH_SMTP_HOST is not set (the SMTP relay to send through)"
            )
        try:
            port = int(_env("CREDITWATCH_SMTP_PORT", "587") or 587)
        except ValueError:
            raise ConfigError("CREDITWATCH_SMTP_PORT is not a port number") from None
        starttls = _env("CREDITWATCH_SMTP_STARTTLS", "1") not in ("0", "false", "no", "off")
        user, password = _env("CREDITWATCH_SMTP_USER"), _env("CREDITWATCH_SMTP_PASSWORD")
        fallback = user if user and "@" in user else "creditwatch@localhost"
        sender = _env("CREDITWATCH_SMTP_FROM") or fallback
        timeout = _env_float("CREDITWATCH_SMTP_TIMEOUT", 30.0)
        msg = self.build(message, sender=sender)
        where = f"smtp {host}:{port}"
        try:
            with _SMTP(host, port, timeout=timeout) as smtp:
                if starttls:
                    context = ssl.create_default_context(cafile=_env("CREDITWATCH_SMTP_CAFILE"))
                    smtp.starttls(context=context)
                if user:
                    smtp.login(user, password or "")
                refused = smtp.send_message(msg)
                code, reply = smtp.last_data or (250, b"")
        except (smtplib.SMTPException, OSError) as exc:
            raise _smtp_error(exc, where) from exc
        receipt = f"{where}: {code} {reply.decode(errors='replace')}".strip()
        if refused:
            receipt += f" (refused: {', '.join(sorted(refused))})"
            if any(400 <= c < 500 for c, _ in refused.values()):
                raise ChannelError(
                    f"{receipt}: temporarily refused recipients; the redelivery keeps its "
                    "Message-ID",
                    retryable=True,
                )
        return receipt


def _parse_email(spec: str, rest: str) -> EmailChannel:
    addresses: list[str] = []
    for raw in rest.split(","):
        addr = raw.strip()
        if not addr:
            continue
        if any(ch.isspace() or ord(ch) < 32 for ch in addr) or addr.count("@") != 1:
            raise ValueError(f"{spec!r}: {addr!r} is not an email address")
        try:
            parsed = Address(addr_spec=addr)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{spec!r}: {addr!r} is not an email address ({exc})") from None
        if not parsed.username or ("." not in parsed.domain and parsed.domain != "localhost"):
            raise ValueError(f"{spec!r}: {addr!r} is not an email address")
        addresses.append(addr)
    if not addresses:
        raise ValueError(f"{spec!r}: email: needs at least one address (email:a@example.org)")
    return EmailChannel(spec=spec, addresses=tuple(dict.fromkeys(addresses)))


# -- webhook -----------------------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    """``sha256=HEX``: HMAC-SHA256 of the exact body bytes, what receivers check."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def json_body(data: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the same bytes for the same data (keys sorted)."""
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(
            "utf-8"
        )
    except UnicodeEncodeError:  # lone surrogates: ASCII escapes are still exact JSON
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode("ascii")


@dataclass
class WebhookChannel:
    """Signed JSON POST to one URL."""

    spec: str
    url: str
    secret_env: str = "CREDITWATCH_WEBHOOK_SECRET"
    kind: str = "webhook"
    exactly_once: bool = True

    def deliver(self, message: AlertMessage) -> str:
        secret = _env(self.secret_env)
        if secret is None:
            raise ConfigError(
                f"webhook {self.url}: {self.secret_env} is not set (the HMAC secret the "
                "receiver verifies the signature with)"
            )
        body = json_body(message.data or {"key": message.key, "subject": message.subject})
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": one_line(message.key),
            "X-Creditwatch-Signature": signature(secret, body),
            "X-Creditwatch-Timestamp": str(int(time.time())),
            "User-Agent": "creditwatch-alerts",
        }
        timeout = _env_float("CREDITWATCH_WEBHOOK_TIMEOUT", 15.0)
        try:
            response = httpx.post(
                self.url, content=body, headers=headers, timeout=timeout, follow_redirects=False
            )
        except httpx.HTTPError as exc:
            raise ChannelError(
                f"webhook {self.url}: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            return f"HTTP {status}"
        reason = one_line(response.text[:200])
        where = f"webhook {self.url}: HTTP {status}"
        if 300 <= status < 400:
            location = response.headers.get("location", "?")
            raise ConfigError(f"{where}: redirected to {location}; give the final URL")
        if status in (401, 403):
            raise ConfigError(
                f"{where} {reason}".rstrip()
                + f": the receiver refused the signature; check {self.secret_env}"
            )
        if status in (408, 429) or status >= 500:
            raise ChannelError(
                f"{where} {reason}".rstrip(),
                retryable=True,
                retry_after=_retry_after(response.headers.get("retry-after")),
            )
        raise ChannelError(f"{where} {reason}".rstrip(), retryable=False)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _parse_webhook(spec: str, rest: str) -> WebhookChannel:
    url, _, fragment = rest.partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{spec!r}: a webhook needs an http(s) URL (webhook:https://host/path)")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError(f"{spec!r}: the webhook URL contains whitespace or control characters")
    secret_env = "CREDITWATCH_WEBHOOK_SECRET"
    if fragment:
        options = dict(parse_qsl(fragment, keep_blank_values=True))
        unknown = sorted(set(options) - {"secret_env"})
        if unknown:
            raise ValueError(f"{spec!r}: unknown webhook option(s) {', '.join(unknown)}")
        secret_env = options.get("secret_env", secret_env)
        if not _ENV_NAME.match(secret_env):
            raise ValueError(f"{spec!r}: secret_env must name an environment variable")
    return WebhookChannel(spec=spec, url=url, secret_env=secret_env)


# -- Atom feed ---------------------------------------------------------------------------------


def _xml_text(value: str) -> str:
    """Text XML 1.0 can hold: characters it forbids (NUL, most C0) become U+FFFD."""
    return _XML_INVALID.sub("\ufffd", value)


def _tag(name: str) -> str:
    return f"{{{ATOM_NS}}}{name}"


def _sub(parent: ET.Element, name: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, _tag(name), attrs)
    if text is not None:
        element.text = _xml_text(text)
    return element


def _atom_time(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")


def entry_id(key: str) -> str:
    return f"urn:creditwatch:alert:{quote(key, safe='')}"


def _entry_updated(message: AlertMessage, default: datetime) -> datetime:
    at = message.data.get("at") if message.data else None
    if isinstance(at, str):
        try:
            parsed = datetime.fromisoformat(at)
        except ValueError:
            return default
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return default


def atom_entry(message: AlertMessage, *, updated: datetime) -> ET.Element:
    """One Atom entry: id from the key, title the subject, content the escaped HTML, its
    ``alternate`` link the web app's page (``message.link``), ``related`` the source page."""
    entry = ET.Element(_tag("entry"))
    _sub(entry, "id", entry_id(message.key))
    _sub(entry, "title", one_line(message.subject))
    _sub(entry, "updated", _atom_time(_entry_updated(message, updated)))
    link = message.link or (message.data.get("link") if message.data else None)
    if isinstance(link, str) and web_url(link):
        _sub(entry, "link", rel="alternate", type="text/html", href=link)
    evidence = message.data.get("evidence") if message.data else None
    url = evidence.get("source_url") if isinstance(evidence, dict) else None
    if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
        _sub(entry, "link", rel="related", href=_xml_text(url))
    kind = message.data.get("kind") if message.data else None
    if isinstance(kind, str):
        _sub(entry, "category", term=_xml_text(kind))
    _sub(entry, "content", message.html, type="html")  # the serializer escapes the markup
    return entry


def _feed_bytes(
    entries: Sequence[ET.Element],
    *,
    feed_id: str,
    title: str,
    updated: datetime,
    links: Sequence[tuple[str, str]] = (),
) -> bytes:
    feed = ET.Element(_tag("feed"))
    _sub(feed, "id", feed_id)
    _sub(feed, "title", one_line(title))
    _sub(feed, "updated", _atom_time(updated))
    for rel, href in links:
        if web_url(href):
            _sub(feed, "link", rel=rel, href=href)
    author = _sub(feed, "author")
    _sub(author, "name", "creditwatch")
    _sub(feed, "generator", "creditwatch")
    feed.extend(entries)
    ET.indent(feed)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"


def write_atom(
    entries: Sequence[AlertMessage],
    *,
    feed_id: str,
    title: str,
    updated: datetime,
    links: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A whole Atom 1.0 feed of ``entries`` in the order given (newest first, by convention).

    An entry's ``updated`` is its message's ``data["at"]`` when it has one, else ``updated``.
    ``links`` are the feed's own (``rel``, http(s) ``href``): ``self``, ``alternate``.
    """
    return _feed_bytes(
        [atom_entry(m, updated=updated) for m in entries],
        feed_id=feed_id,
        title=title,
        updated=updated,
        links=links,
    )


FEED_MODE = 0o644  # a feed file is published: the web server's user reads it


def replace_file(path: Path, data: bytes, mode: int = FEED_MODE) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file renamed over it), with
    ``mode`` whatever the umask: readers never see half a feed, nor a file they cannot read."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class FeedChannel:
    """An Atom file that alerts are added to, one entry per key."""

    spec: str
    path: Path
    max_entries: int = FEED_MAX_ENTRIES
    kind: str = "feed"
    exactly_once: bool = True
    _title: str = field(default="creditwatch alerts", repr=False)

    def deliver(self, message: AlertMessage) -> str:
        now = datetime.now(UTC).replace(microsecond=0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time
                feed_id, title, kept = self._read()
                new = atom_entry(message, updated=now)
                own_id = entry_id(message.key)
                others = [e for e in kept if e.findtext(_tag("id")) != own_id]
                replaced = len(others) != len(kept)
                entries = [new, *others][: self.max_entries]
                title = message.feed_title or title
                data = _feed_bytes(entries, feed_id=feed_id, title=title, updated=now)
                replace_file(self.path, data)
        except OSError as exc:
            raise ChannelError(f"feed {self.path}: {exc}", retryable=True) from exc
        return f"feed {self.path}: entry {'replaced' if replaced else 'added'}"

    def _read(self) -> tuple[str, str, list[ET.Element]]:
        """The existing feed's id, title and entries; a new feed's when there is no file."""
        default_id = f"urn:creditwatch:feed:{quote(self.path.name, safe='')}"
        if not self.path.exists() or self.path.stat().st_size == 0:
            return default_id, self._title, []
        try:
            root = ET.parse(self.path).getroot()
        except ET.ParseError as exc:
            raise ConfigError(f"feed {self.path}: not an Atom file ({exc}); move it away") from exc
        if root.tag != _tag("feed"):
            raise ConfigError(f"feed {self.path}: not an Atom feed; move it away")
        return (
            root.findtext(_tag("id")) or default_id,
            root.findtext(_tag("title")) or self._title,
            root.findall(_tag("entry")),
        )


def _parse_feed(spec: str, rest: str) -> FeedChannel:
    if not rest.strip() or any(ord(ch) < 32 for ch in rest):
        raise ValueError(f"{spec!r}: feed: needs a file path (feed:/srv/www/alerts.xml)")
    path = Path(rest).expanduser()
    if path.exists() and path.is_dir():
        raise ValueError(f"{spec!r}: {path} is a directory; give the feed file's path")
    return FeedChannel(spec=spec, path=path)


# -- apprise -----------------------------------------------------------------------------------


def _apprise_asset() -> Any:
    from apprise import AppriseAsset

    # No :emoji: codes or backslash escapes read out of scraped text; send in this thread.
    return AppriseAsset(interpret_emojis=False, interpret_escapes=False, async_mode=False)


@dataclass
class AppriseChannel:
    """Any service apprise speaks, addressed by its URL."""

    spec: str
    service: Any = field(repr=False)
    kind: str = "apprise"
    exactly_once: bool = False

    def __repr__(self) -> str:  # never print the tokens a service URL carries
        return f"AppriseChannel({self.service.url(privacy=True)!r})"

    def deliver(self, message: AlertMessage) -> str:
        from apprise import Apprise, NotifyFormat

        wanted = NotifyFormat.MARKDOWN
        resolve = getattr(self.service, "resolve_format", None)
        chosen = resolve(wanted) if resolve else NotifyFormat(self.service.notify_format)
        if chosen == NotifyFormat.MARKDOWN:
            body = message.markdown
            if message.key not in body:
                body += f"\n\nkey: `{message.key}`\n"
        elif chosen == NotifyFormat.HTML:
            body = message.html
            if message.key not in body:
                body += f"<p>key: <code>{html.escape(message.key)}</code></p>\n"
        else:
            body = _body_text(message)
        where = f"apprise {self.service.url(privacy=True)}"
        timeout = _env_float("CREDITWATCH_APPRISE_TIMEOUT", 60.0)
        apobj = Apprise(asset=_apprise_asset())
        apobj.add(self.service)
        try:
            result = apobj.notify(
                body=body, title=one_line(message.subject), body_format=chosen, timeout=timeout
            )
        except Exception as exc:  # a plugin's own failure is still a failed delivery
            raise ChannelError(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from exc
        if not result:
            logs = getattr(result, "logs", None)
            detail = "; ".join(
                one_line(entry.message)
                for entry in (logs() if logs else [])
                if getattr(entry, "level", "") in ("WARNING", "ERROR", "CRITICAL")
            )
            raise ChannelError(f"{where}: not delivered {detail}".rstrip(), retryable=True)
        return f"{where}: sent"


def _parse_apprise(spec: str) -> AppriseChannel:
    from apprise import Apprise

    scheme = spec.split("://", 1)[0] if "://" in spec else ""
    if not scheme:
        raise ValueError(
            f"{spec!r} is not a channel: expected email:ADDRESS, webhook:https://…, feed:PATH "
            "or an apprise URL (json://…, slack://…, tgram://…, dingtalk://…)"
        )
    service = Apprise.instantiate(spec, asset=_apprise_asset())
    if service is None:
        # the URL itself may carry tokens: name only its scheme
        raise ValueError(
            f"apprise cannot use this {scheme}:// URL (unknown service, or a malformed "
            "token or target; see the apprise documentation for its form)"
        )
    return AppriseChannel(spec=spec, service=service)


# -- parsing -----------------------------------------------------------------------------------


def parse_channel(spec: str) -> Channel:
    """The channel a subscription's spec names; ``ValueError`` saying what is wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("empty channel spec")
    spec = spec.strip()
    prefix, sep, rest = spec.partition(":")
    if sep and prefix == "email":
        return _parse_email(spec, rest)
    if sep and prefix == "webhook":
        return _parse_webhook(spec, rest)
    if sep and prefix == "feed":
        return _parse_feed(spec, rest)
    return _parse_apprise(spec)
