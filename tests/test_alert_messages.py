"""Alert messages say what happened, to whom, on which list and on what evidence, in zh and
en, and a hostile entity name stays inert text in every medium."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from markdown_it import MarkdownIt

from alerts.channels import json_body
from alerts.messages import (
    digest_message,
    event_message,
    health_message,
    sample_message,
)
from alerts.model import AlertMessage, EventContext, Evidence, Match, MatchedEvent

NAME = "厦门某某旅行社有限公司"
USCC = "91350200MA31K8W2P4"
URL = "https://lyj.xm.gov.cn/xypt/detail?id=42"
SHA = "ab" * 32
AT = datetime(2025, 11, 22, 2, 0, tzinfo=UTC)
HOSTILE = (
    "<script>alert('x')</script>**[click](http://evil.example)**_嘉禾_ `code` <b>粗</b>"
    "\r\nBcc: victim@example.org\u202eevil\x00 😀 &lt;img src=x onerror=alert(1)&gt; | 表 |"
    " www.evil.example https://evil.example/x \\" + "长" * 400
)


LIST_NAMES = {  # as in the registry
    "xmtravel.warning": ("信用公示（警示信息）", "Warnings (administrative penalties)"),
    "xmtravel.good": ("良好信息公示", "Good conduct (honours)"),
}


def matched(
    kind: str = "listed",
    *,
    name: str = NAME,
    list_id: str = "xmtravel.warning",
    cause: str | None = None,
    changes: dict[str, list[Any]] | None = None,
    baseline: bool = False,
    record: dict[str, Any] | None = None,
    match: Match | None = None,
    health: str | None = "healthy",
) -> MatchedEvent:
    """An event with its context, as matching hands it over (SCHEMA.md's event object)."""
    event = {
        "event_id": f"ev-{kind}-{cause or 'x'}",
        "event": kind,
        "source": list_id.split(".")[0],
        "list": list_id,
        "record_key": "厦文旅罚(2025)12号",
        "entity_id": f"uscc:{USCC}",
        "entity_name": name,
        "case_number": "厦文旅罚〔2025〕12号",
        "title": None,
        "cause": cause,
        "changes": changes,
        "baseline": baseline,
        "run_id": "xmtravel:3",
        "at": AT,
        "evidence": {"source_url": URL, "raw_sha256": SHA},
    }
    rec = {
        "source": "xmtravel",
        "list": list_id,
        "list_kind": "warning",
        "entity_name": name,
        "uscc": USCC,
        "reason": "未与旅游者签订旅游合同",
        "measure": "警告，罚款人民币贰万元",
        "decided_on": "2025-11-20",
        "fine_yuan": 20000,
    }
    if record is not None:
        rec = record
    ctx = EventContext(
        event=event,
        record=rec,
        evidence=Evidence(
            source_url=URL,
            raw_sha256=SHA,
            run_id="xmtravel:3",
            run_health=health,
            fetched_at="2025-11-22T02:00:05+00:00",
        ),
        list_name_zh=LIST_NAMES[list_id][0],
        list_name_en=LIST_NAMES[list_id][1],
        source_name_zh="厦门市旅游行业信用信息平台",
        source_name_en="Xiamen Tourism Credit Information Platform",
    )
    return MatchedEvent(context=ctx, match=match or Match("fuzzy_name", "某某旅行社", 95.5))


def message(item: MatchedEvent, language: str) -> AlertMessage:
    return event_message(item, subscription_id="xm-desk", language=language, key="k-1")


def markdown_html(markdown: str) -> str:
    return MarkdownIt("commonmark").render(markdown)


class Tags(HTMLParser):
    """Every start tag and attribute of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(markup: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(markup)
    return parser.tags


def test_listed_subjects_in_both_languages() -> None:
    assert message(matched(), "zh").subject == f"[creditwatch] 列入 信用公示（警示信息）: {NAME}"
    assert message(matched(), "en").subject == (
        f"[creditwatch] listed on Warnings (administrative penalties): {NAME}"
    )


@pytest.mark.parametrize(
    ("kind", "zh", "en"),
    [
        ("listed", "列入", "listed on"),
        ("relisted", "重新列入", "relisted on"),
        ("modified", "信息更正", "modified on"),
        ("delisted", "移出", "delisted from"),
    ],
)
def test_each_kind_is_named(kind: str, zh: str, en: str) -> None:
    item = matched(kind, cause="expired" if kind == "delisted" else None)
    assert message(item, "zh").subject.startswith(f"[creditwatch] {zh} 信用公示（警示信息）: ")
    assert message(item, "en").subject.startswith(f"[creditwatch] {en} Warnings ")


@pytest.mark.parametrize("language", ["zh", "en"])
def test_body_says_who_which_list_why_and_on_what_evidence(language: str) -> None:
    msg = message(matched(), language)
    for body in (msg.text, msg.html, msg.markdown):
        assert NAME in body
        assert USCC in body
        assert "/lists/xmtravel.warning" in body.replace("\\", "")  # the list's page
        assert "/entities/uscc%3A" + USCC in body.replace("\\", "")  # the entity's page
        assert ("信用公示（警示信息）" if language == "zh" else "Warnings") in body
        assert SHA in body
        assert "xmtravel:3" in body.replace("\\", "")
        assert ("健康" if language == "zh" else "healthy") in body
        fetched = "2025-11-22 10:00（北京时间）" if language == "zh" else "2025-11-22 10:00 (UTC+8)"
        assert fetched in body.replace("\\", "")
        assert "某某旅行社" in body and "95.5" in body.replace("\\", "")
        assert "k-1" in body.replace("\\", "")
    assert ("来源网址" if language == "zh" else "Source URL") in msg.text
    assert ("近似名称" if language == "zh" else "similar name") in msg.text
    assert f"  {'事由' if language == 'zh' else 'Reason'}: 未与旅游者签订旅游合同" in msg.text
    assert f'<a href="{URL}">' in msg.html
    assert f"<{URL}>" in msg.markdown
    assert msg.language == language and msg.key == "k-1"
    assert msg.link == f"http://127.0.0.1:8000/entities/uscc%3A{USCC}" == msg.data["link"]


@pytest.mark.parametrize(
    ("cause", "zh", "en"),
    [
        ("published_removal", "平台已公布移出", "the portal published its removal"),
        ("expired", "已超过公示截止日期", "past its valid-until date"),
        (
            "disappeared",
            "在该名单连续多次健康的抓取中均未再出现",
            "absent from consecutive healthy runs",
        ),
    ],
)
def test_delisted_explains_its_cause(cause: str, zh: str, en: str) -> None:
    item = matched("delisted", cause=cause)
    zh_msg, en_msg = message(item, "zh"), message(item, "en")
    assert f"移出原因: {zh}" in zh_msg.text  # in words, not the code
    assert f"Cause: {en}" in en_msg.text
    assert f": {cause}" not in zh_msg.text and f": {cause}" not in en_msg.text
    assert zh in zh_msg.html and en in en_msg.html
    assert zh_msg.data["events"][0]["cause"] == cause


@pytest.mark.parametrize("language", ["zh", "en"])
def test_modified_lists_each_change(language: str) -> None:
    changes = {
        "measure": ["警告", "警告，罚款人民币贰万元"],
        "fine_yuan": [None, 20000],
        "penalty_types": [["warning"], ["warning", "fine"]],
    }
    msg = message(matched("modified", changes=changes), language)
    none = "（空）" if language == "zh" else "(none)"
    if language == "zh":
        assert "处罚结果/措施: 警告 → 警告，罚款人民币贰万元" in msg.text
        assert f"罚款金额: {none} → 2万元" in msg.text
        assert "处罚种类: 警告 → 警告、罚款" in msg.text
    else:
        assert "Measure: 警告 → 警告，罚款人民币贰万元" in msg.text
        assert f"Fine: {none} → ¥20,000" in msg.text
        assert "Penalty types: warning → warning, fine" in msg.text
    assert "fine_yuan" not in msg.text and "penalty_types" not in msg.text
    assert "警告 → 警告，罚款人民币贰万元" in msg.html
    assert "警告 → 警告，罚款人民币贰万元" in msg.markdown
    assert msg.data["events"][0]["changes"] == changes


def test_baseline_is_noted() -> None:
    item = matched(baseline=True)
    zh, en = message(item, "zh"), message(item, "en")
    assert "（基线）" in zh.subject and "基线" in zh.text
    assert "(baseline)" in en.subject and "not a new listing" in en.text
    assert "基线" not in message(matched(), "zh").text


def test_masked_id_is_shown_exactly_as_stored() -> None:
    masked = "350203********123X"
    record = {"entity_name": "张某某", "id_number_masked": masked, "uscc": None}
    msg = message(matched(name="张某某", record=record), "zh")
    assert f"身份证号（平台已脱敏，按原样）: {masked}" in msg.text
    assert masked in msg.html and masked in msg.markdown
    assert msg.data["records"][0]["id_number_masked"] == masked
    assert "统一社会信用代码:" not in msg.text


def test_degraded_run_and_missing_evidence_are_stated() -> None:
    item = matched(health="degraded")
    ctx = item.context
    bare = EventContext(
        event={**ctx.event, "evidence": {}},
        record=ctx.record,
        evidence=Evidence(None, None, "xmtravel:3", "degraded", None),
    )
    msg = message(MatchedEvent(bare, item.match), "en")
    assert "List health in that run: degraded (cannot prove absence)" in msg.text
    assert "Source URL: (unknown)" in msg.text
    links = [attrs.get("href") for tag, attrs in tags(msg.html) if tag == "a"]
    assert all(link.startswith("http://127.0.0.1:8000/") for link in links if link)


def test_event_data_is_the_schema_objects_with_iso_datetimes() -> None:
    item = matched("delisted", cause="disappeared")
    data = message(item, "en").data
    assert set(data) >= {"subscription", "key", "events", "evidence", "match"}
    assert data["subscription"] == "xm-desk" and data["key"] == "k-1"
    assert data["events"][0] == {**item.context.event, "at": AT.isoformat()}
    assert data["evidence"] == {
        "source_url": URL,
        "raw_sha256": SHA,
        "run_id": "xmtravel:3",
        "run_health": "healthy",
        "fetched_at": "2025-11-22T02:00:05+00:00",
    }
    assert data["match"] == {"criterion": "fuzzy_name", "value": "某某旅行社", "score": 95.5}
    assert json.loads(json_body(data)) == data


@pytest.mark.parametrize("language", ["zh", "en"])
def test_digest_groups_by_list_and_counts_kinds(language: str) -> None:
    items = [
        matched("listed", name="甲公司"),
        matched("delisted", name="乙公司", cause="expired"),
        matched("listed", name="丙公司", list_id="xmtravel.good"),
        matched("modified", name="丁公司", changes={"measure": ["警告", "罚款"]}),
    ]
    start = datetime(2025, 11, 21, 16, tzinfo=UTC)
    msg = digest_message(
        items,
        subscription_id="xm-desk",
        language=language,
        key="digest-1",
        window=(start, start + timedelta(days=1)),
    )
    if language == "zh":
        assert msg.subject == ("[creditwatch] 摘要 xm-desk: 列入 2 · 信息更正 1 · 移出 1 (共 4 条)")
    else:
        assert msg.subject == (
            "[creditwatch] digest xm-desk: 2 listed · 1 modified · 1 delisted (4 events)"
        )
    text = msg.text
    zh = language == "zh"
    good = "良好信息公示:" if zh else "Good conduct (honours):"
    warning = "信用公示（警示信息）:" if zh else "Warnings (administrative penalties):"
    # groups in the order of the lists' ids (good < warning), each under the list's name
    assert text.index(good) < text.index("丙公司") < text.index(warning)
    assert text.index(warning) < text.index("甲公司") < text.index("丁公司")
    if language == "zh":
        assert "2025-11-22 00:00（北京时间） – 2025-11-23 00:00（北京时间）" in text
    else:
        assert "2025-11-22 00:00 (UTC+8) – 2025-11-23 00:00 (UTC+8)" in text
    assert "警告 → 罚款" in text
    assert text.count(SHA) == 4 and msg.html.count(SHA) == 4
    data = msg.data
    assert data["kind"] == "digest" and data["key"] == "digest-1"
    assert [e["entity_name"] for e in data["events"]] == ["甲公司", "乙公司", "丙公司", "丁公司"]
    assert len(data["evidence"]) == len(data["match"]) == 4
    assert data["counts"] == {"delisted": 1, "listed": 2, "modified": 1}
    assert json.loads(json_body(data)) == data


def test_empty_digest_says_so() -> None:
    start = datetime(2025, 11, 21, 16, tzinfo=UTC)
    msg = digest_message(
        [], subscription_id="s", language="en", key="d", window=(start, start + timedelta(1))
    )
    assert msg.subject == "[creditwatch] digest s: no events"
    assert msg.data["events"] == []


@pytest.mark.parametrize("language", ["zh", "en"])
def test_health_message_lists_the_runs(language: str) -> None:
    runs = [
        {"run_id": "xmtravel:7", "state": "failed", "started_at": AT, "error": "412 <WAF>"},
        {"run_id": "xmtravel:6", "state": "degraded", "started_at": AT - timedelta(days=1)},
    ]
    msg = health_message(
        source="xmtravel",
        problem="failing",
        detail="3 runs without a healthy list",
        runs=runs,
        language=language,
        key="health-xmtravel-7",
    )
    assert "xmtravel" in msg.subject
    assert ("连续多次抓取不健康" if language == "zh" else "runs keep failing") in msg.subject
    assert "xmtravel:7" in msg.text and "xmtravel:6" in msg.text and "412 <WAF>" in msg.text
    assert "412 &lt;WAF&gt;" in msg.html and "<WAF>" not in msg.html
    assert msg.data["runs"][0]["started_at"] == AT.isoformat()
    assert msg.data["at"] == AT.isoformat()


@pytest.mark.parametrize("language", ["zh", "en"])
def test_sample_message_is_fixed_and_invented(language: str) -> None:
    msg = sample_message(language)
    assert msg == sample_message(language)
    assert msg.key == f"sample-{language}"
    assert "厦门某某旅行社有限公司" in msg.subject and "[test]" in msg.subject
    assert ("测试" if language == "zh" else "test alert") in msg.text
    assert msg.data["events"][0]["event"] == "listed"


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        message(matched(), "fr")


# -- hostile names -----------------------------------------------------------------------------


@pytest.fixture(params=["zh", "en"])
def hostile(request: pytest.FixtureRequest) -> AlertMessage:
    changes = {"entity_name": ["旧名", HOSTILE]}
    return message(matched("modified", name=HOSTILE, changes=changes), request.param)


def test_hostile_name_subject_is_one_clean_line(hostile: AlertMessage) -> None:
    subject = hostile.subject
    assert not any(ch in subject for ch in "\r\n\x00\u202e")
    assert subject.isprintable()
    assert len(subject) < 140
    assert subject.startswith("[creditwatch] ")


def test_hostile_name_is_inert_in_html(hostile: AlertMessage) -> None:
    markup = hostile.html
    assert "<script" not in markup.lower() and "<b>" not in markup and "<img" not in markup
    links = [attrs.get("href") for tag, attrs in tags(markup) if tag == "a"]
    web = "http://127.0.0.1:8000"
    # only our links to the web app and the evidence link
    assert links == [f"{web}/entities/uscc%3A{USCC}", f"{web}/lists/xmtravel.warning", URL]
    assert {tag for tag, _ in tags(markup)} <= {
        "div",
        "h2",
        "h4",
        "table",
        "tr",
        "th",
        "td",
        "a",
        "code",
    }
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in markup
    assert "&amp;lt;img" in markup  # an entity in the name is shown, not decoded
    assert "\x00" not in markup and "\u202e" not in markup and "\r" not in markup
    assert "\\u202e" in markup and "\\u0000" in markup and "\\u000d\\u000a" in markup
    assert "😀" in markup


def test_hostile_name_is_inert_in_markdown(hostile: AlertMessage) -> None:
    rendered = markdown_html(hostile.markdown)
    links = [attrs.get("href") for tag, attrs in tags(rendered) if tag == "a"]
    web = "http://127.0.0.1:8000"
    assert links == [f"{web}/entities/uscc%3A{USCC}", f"{web}/lists/xmtravel.warning", URL]
    assert "<script" not in rendered and "<b>" not in rendered and "<img" not in rendered
    assert "<em>" not in rendered and "<table" not in rendered
    # emphasis appears only around our own labels, never inside the name
    assert "**[click](http://evil.example)**_嘉禾_ `code`" in rendered
    assert "<code>code</code>" not in rendered
    assert "\x00" not in hostile.markdown and "\u202e" not in hostile.markdown
    assert "😀" in rendered


def test_hostile_name_is_inert_in_text(hostile: AlertMessage) -> None:
    text = hostile.text
    assert "\x00" not in text and "\u202e" not in text and "\r" not in text
    assert not any(line.startswith("Bcc:") for line in text.splitlines())
    assert "<script>alert('x')</script>**[click](http://evil.example)**" in text
    assert "… (+" in text  # the long name is cut, saying so


def test_hostile_name_round_trips_exactly_in_json(hostile: AlertMessage) -> None:
    body = json_body(hostile.data)
    data = json.loads(body)
    assert data["events"][0]["entity_name"] == HOSTILE
    assert data["events"][0]["changes"]["entity_name"] == ["旧名", HOSTILE]
    assert data["records"][0]["entity_name"].encode("utf-8") == HOSTILE.encode("utf-8")


def test_lone_surrogate_and_emoji_survive_every_medium() -> None:
    name = "坏\ud800名👨‍👩‍👧"
    msg = message(matched(name=name), "en")
    for body in (msg.subject, msg.text, msg.html, msg.markdown):
        body.encode("utf-8")  # no lone surrogate left to break an encoder
    assert "👨‍👩‍👧" in msg.text  # ZWJ sequences are kept whole
    assert json.loads(json_body(msg.data))["events"][0]["entity_name"] == name
