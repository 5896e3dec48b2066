"""Fetch outcomes, in the run-health vocabulary of SCHEMA.md.

Every fetch gets exactly one outcome. Spiders raise ``PageProblem`` subclasses from their
callbacks when a page came back but cannot be trusted; the run extension records them.
"""

from __future__ import annotations

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
