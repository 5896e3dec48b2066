"""Fetch outcomes, in the run-health vocabulary of SCHEMA.md.

Every fetch gets exactly one outcome. Spiders raise ``PageProblem`` subclasses from their
callbacks when a page came back but cannot be trusted; the run extension records them.
"""

from __future__ import annotations

from scrapy.http import Response, TextResponse
from twisted.internet.error import TimeoutError

OUTCOMES = (
    "ok",
    "http_error",
    "timeout",
    "waf_challenge",
    "session_rejected",
    "captcha_required",
    "rate_limited",
    "empty",
    "malformed",
    "layout_drift",
)


class PageProblem(Exception):
    """A page was received but says nothing trustworthy about its list."""

    outcome = "malformed"


class EmptyPage(PageProblem):
    outcome = "empty"


class LayoutDrift(PageProblem):
    outcome = "layout_drift"


class MalformedPage(PageProblem):
    outcome = "malformed"


def outcome_for_status(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 412:
        return "waf_challenge"
    if status in (403, 429):
        return "rate_limited"
    return "http_error"


def outcome_for_exception(exc: BaseException) -> str:
    """A download that raised: a timeout, or else a failed fetch (refused connection, DNS,
    a request not in the replayed cassette, one robots.txt forbids)."""
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
        return "timeout"
    if isinstance(exc, PageProblem):
        return exc.outcome
    return "http_error"


def undecodable(response: Response) -> str | None:
    """Why a text page's bytes are not valid in its own encoding, or None.

    Scrapy decodes with replacement characters, so a corrupted GBK page would still parse,
    and its mangled names would read as corrections. Such a page says nothing trustworthy.
    """
    if not isinstance(response, TextResponse):
        return None
    declared = response._declared_encoding()  # None: guessed, and a guess proves nothing
    if declared is None:
        return None
    try:
        response.body.decode(response.encoding)
    except UnicodeDecodeError as exc:
        return f"bytes {exc.start}-{exc.end} are not valid {response.encoding}: {exc.reason}"
    except LookupError:
        return f"unknown encoding {response.encoding!r}"
    return None
