"""What a Scrapy download says about its page: the outcome of a failed fetch, and bytes that
are not valid in their own declared encoding. The vocabulary itself is ``core.outcomes``."""

from __future__ import annotations

import re

from scrapy.http import HtmlResponse, Response, TextResponse
from scrapy.http.response.json import JsonResponse
from twisted.internet.error import TimeoutError

from core.outcomes import PageProblem

# A WAF's JavaScript challenge (瑞数/创宇盾: an inline ``$_ts`` seed, ``<meta … r='m'>``).
CHALLENGE_MARKERS = re.compile(r"""\$_ts\s*=|<meta[^>]+\br=["']m["']""")
# A captcha form: an input or image named for the captcha.
CAPTCHA_MARKERS = re.compile(
    r"""<(?:input|img)[^>]+(?:name|id|src)=["']?[^"'>]*(?:captcha|verifycode|checkcode|yzm)""",
    re.I,
)
HTML_END = re.compile(rb"</html\s*>", re.I)
DATA_TABLE = re.compile(rb"<table[\s>]", re.I)
SNIFFED = 65536  # challenge and captcha pages are small; a data page's head is enough


class ChallengePage(PageProblem):
    """A page served with a status that looks fine but that cannot be read as the data: a
    challenge or captcha in its place, an empty or cut-short body, undecodable bytes;
    ``outcome`` names which."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome


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


def challenge_outcome(response: Response) -> str | None:
    """``waf_challenge`` or ``captcha_required`` for an HTML page that is a WAF challenge or a
    captcha form in place of the data, else None. Such a page parses as a page without rows
    (layout drift, malformed JSON), which would name the wrong cause."""
    if not isinstance(response, TextResponse) or isinstance(response, JsonResponse):
        return None
    head = response.body[:SNIFFED].decode(response.encoding, errors="replace")
    if CHALLENGE_MARKERS.search(head):
        return "waf_challenge"
    if CAPTCHA_MARKERS.search(head) and not DATA_TABLE.search(response.body):
        # A list page may carry a search form with its own captcha: only a page without
        # any table in it is a captcha in place of the data.
        return "captcha_required"
    return None


def incomplete(response: Response) -> tuple[str, str] | None:
    """(outcome, detail) for a text page with no content (``empty``) or an HTML document that
    stops before its end (``malformed``), else None.

    A server that dies mid-page but sends a matching Content-Length gives a well-formed answer
    holding part of the page: it parses, with rows missing and maybe no pager to notice."""
    if not isinstance(response, TextResponse):
        return None
    content = response.body.rstrip()
    if not content:
        return ("empty", f"HTTP {response.status} with an empty body")
    document = isinstance(response, HtmlResponse) and b"<html" in content[:SNIFFED].lower()
    if document and not HTML_END.search(content[-SNIFFED:]):
        return ("malformed", f"the HTML document stops after {len(content)} bytes: cut short")
    return None
