"""Credit China's private API as data: URLs, the response envelope, outcomes and rows.

Pure functions, no browser and no I/O, so every rule the spider applies to a response can be
tested on bytes. The spider (``crawlers/sources/creditchina/spider.py``) does the fetching.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from crawlers.cassette import without_params

# --- Endpoints, envelope and defence markers, in one block ---------------------------------
SEARCH_SUBJECT = "catalogSearchHome"
SUBJECT_DETAILS = "getTyshxydmDetailsContent"
SUBJECT_RECORDS = "typeSourceSearch"
CAPTCHA_IMAGE = "verify/getVerify"
CAPTCHA_CHECK = "verify/checkVerify"
CAPTCHA_FIELD = "verifyInput"
SEARCH_PARAMS = {
    "scenes": "defaultScenario",
    "tableName": "credit_xyzx_tyshxydm",
    "searchState": "2",
    "entityType": "1,2,4,5,6,7,8",
    "templateId": "",
}
DETAILS_PARAMS = {"scenes": "defaultscenario", "searchState": "1"}
RECORDS_PARAMS = {"source": "", "searchState": "1", "scenes": "defaultscenario"}
RECORDS_SORT = {"pubSort": "desc"}
OK_STATUS = 1
SESSION_REJECTED_STATUS = 40001
SESSION_REJECTED_TEXT = ("刷新后重试",)
CAPTCHA_TEXT = ("验证码",)
CAPTCHA_HTML = re.compile(r"""class=["'][^"']*\bvcodepop\b|id=["']vcodeimg["']""")
# 瑞数/创宇盾 challenge pages: a <meta content=… r='m'> seed plus an inline $_ts script.
CHALLENGE_HTML = re.compile(r"""\$_ts\s*=|<meta[^>]+\br=["']m["']""")
VOLATILE_PARAMS = ("rcwCQitg", "_v")
USCC_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
# -------------------------------------------------------------------------------------------

# Session-level refusals: the site is refusing this session, so the run stops and the outcome
# bears on every list; the others are about the one page that got them.
SESSION_OUTCOMES = frozenset(
    {"waf_challenge", "session_rejected", "captcha_required", "rate_limited"}
)


@dataclass(frozen=True)
class Reply:
    """What one API response says: its outcome and, when ok, the envelope's ``data``."""

    outcome: str
    data: Any = None
    detail: str | None = None


def api_url(base: str, endpoint: str, params: Mapping[str, Any]) -> str:
    """The call's URL, parameters in the given order (cassettes match on the query)."""
    query = urlencode([(key, "" if value is None else str(value)) for key, value in params.items()])
    return f"{base}{endpoint}?{query}"


def without_volatile(url: str, volatile: Iterable[str] = VOLATILE_PARAMS) -> str:
    """``url`` minus the WAF token and cache-busters: what is archived and cited."""
    return without_params(url, volatile)


def classify(status: int, body: bytes) -> Reply:
    """One outcome of the schema's run-health vocabulary for an API response.

    Order matters: a 40001 comes as HTTP 500 and is a rejected session, not a server error;
    a challenge page can come with 200; a captcha demand is recognised by its text.
    """
    text = body.decode("utf-8", errors="replace")
    payload: Any = None
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    envelope = payload if isinstance(payload, dict) else {}
    message = str(envelope.get("message") or envelope.get("msg") or "")
    if envelope.get("status") == SESSION_REJECTED_STATUS:
        return Reply("session_rejected", detail=f"HTTP {status}: {message or 'status 40001'}")
    if status == 412 or (payload is None and CHALLENGE_HTML.search(text)):
        return Reply("waf_challenge", detail=f"HTTP {status}: challenge page")
    if status in (403, 429):
        return Reply("rate_limited", detail=f"HTTP {status}")
    if any(word in message for word in CAPTCHA_TEXT) or (
        payload is None and CAPTCHA_HTML.search(text)
    ):
        return Reply("captcha_required", detail=f"HTTP {status}: {message or 'captcha page'}")
    if any(word in message for word in SESSION_REJECTED_TEXT):
        return Reply("session_rejected", detail=f"HTTP {status}: {message}")
    if status >= 400:
        return Reply("http_error", detail=f"HTTP {status}")
    if payload is None:
        return Reply("malformed", detail=f"not JSON: {text[:80]!r}")
    if envelope.get("status") != OK_STATUS:
        return Reply("malformed", detail=f"envelope status {envelope.get('status')!r}: {message}")
    return Reply("ok", data=envelope.get("data"))


@dataclass(frozen=True)
class ListData:
    """One page of a list or record search: its rows and what the envelope declares."""

    rows: list[dict[str, Any]]
    total: int | None


def list_data(data: Any) -> ListData:
    """``data.list`` and ``data.total``; raises ValueError when the shape is not there."""
    if not isinstance(data, dict) or not isinstance(data.get("list"), list):
        raise ValueError("envelope data has no list")
    rows = [row for row in data["list"] if isinstance(row, dict)]
    total = data.get("total")
    try:
        declared = int(total) if total is not None else None
    except (TypeError, ValueError):
        declared = None
    return ListData(rows, declared)


def pages_to_read(total: int | None, page_size: int, cap: int | None) -> int:
    """How many pages the portal will serve: the declared total, cut at the cap."""
    if not total or total <= 0:
        return 1
    readable = min(total, cap) if cap else total
    return max(1, math.ceil(readable / page_size))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def labelled_fields(
    row: Mapping[str, Any],
    columns: Mapping[str, str] | None = None,
    ignore: Sequence[str] = ("uuid", "recid", "id"),
) -> dict[str, str]:
    """A row as label → value text, ready for the shared label map.

    Records shaped ``entity`` + ``columnList`` + ``sencesMap`` (typeSourceSearch, details)
    keep the columns the portal says it shows, under the portal's own labels (a code without
    a label keeps its code). Flat rows (catalogSearchPerson, catalogSearch) are labelled by
    the registry's ``columns``; other codes are kept under their code, except internal ids,
    which change per search and are no content.
    """
    if isinstance(row.get("entity"), dict):
        entity = row["entity"]
        labels = row.get("sencesMap") if isinstance(row.get("sencesMap"), dict) else {}
        codes = row.get("columnList") if isinstance(row.get("columnList"), list) else list(labels)
        out: dict[str, str] = {}
        for code in codes:
            value = _text(entity.get(code))
            if value is not None:
                out[str(labels.get(code) or code)] = value
        for key, label in (("dataSource", "数据来源"), ("data_catalog", "数据类别")):
            value = _text(row.get(key))
            if value:
                out.setdefault(label, value)
        return out
    columns = columns or {}
    skip = set(ignore)
    return {
        columns.get(code, code): text
        for code, value in row.items()
        if code not in skip and (text := _text(value)) is not None
    }


@dataclass(frozen=True)
class SubjectHit:
    name: str
    code: str | None
    uuid: str
    entity_type: str


def subject_hits(data: Any) -> list[SubjectHit]:
    """catalogSearchHome hits; raises ValueError when the shape is not there."""
    found = list_data(data)
    return [
        SubjectHit(
            name=str(row.get("accurate_entity_name") or ""),
            code=(
                str(row["accurate_entity_code"]).upper()
                if row.get("accurate_entity_code")
                else None
            ),
            uuid=str(row.get("uuid") or ""),
            entity_type=str(row.get("entityType") or "1"),
        )
        for row in found.rows
    ]


def head_entity(data: Any) -> dict[str, str]:
    """The subject's name and code from getTyshxydmDetailsContent, as profile fields."""
    if not isinstance(data, dict) or not isinstance(data.get("headEntity"), dict):
        raise ValueError("details have no headEntity")
    head = data["headEntity"]
    fields = {"主体名称": _text(head.get("jgmc")), "统一社会信用代码": _text(head.get("tyshxydm"))}
    return {label: value for label, value in fields.items() if value}


def captcha_passed(body: bytes) -> bool:
    """checkVerify's verdict: ``{"msg":"验证成功","code":0}``."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("code") in (0, "0")
