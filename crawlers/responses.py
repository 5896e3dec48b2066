"""What a Scrapy download says about its page: the outcome of a failed fetch, and bytes that
are not valid in their own declared encoding. The vocabulary itself is ``core.outcomes``."""

from __future__ import annotations

from scrapy.http import Response, TextResponse
from twisted.internet.error import TimeoutError

from core.outcomes import PageProblem


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
