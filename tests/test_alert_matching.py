"""Matching: scope filters first, then the first entity criterion that matches, with the
reason (and fuzzy score) reported; pure and deterministic, and safe on hostile input."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.matching import fuzzy_score, match, match_all, text_words
from alerts.model import EventContext, Evidence, Match, MatchedEvent
from alerts.subscriptions import Subscription
from core.normalise.text import fold

USCC = "91350200612003118E"
OTHER_USCC = "91350206155012345W"
HOTEL = "厦门嘉禾酒店有限公司"
HOSTILE = (
    "=HYPERLINK(\"http://x\")<script>alert('x')</script>**厦门**_嘉禾_[链接](javascript:alert(1))"
    " | 表 | ');DROP TABLE records;-- O'Brien, \"引号\" \\n酒店有限公司"
)


def sub(**fields: Any) -> Subscription:
    data: dict[str, Any] = {"id": "desk", "channels": ["log"]}
    data.update(fields)
    return Subscription.from_dict(data)


def ctx(
    name: str | None = HOTEL,
    *,
    event: str = "listed",
    list_id: str = "xmtravel.warning",
    baseline: bool = False,
    record: dict[str, Any] | None = None,
    **record_fields: Any,
) -> EventContext:
    source = list_id.split(".", 1)[0]
    ev = {
        "event_id": f"e-{list_id}-{name}-{event}",
        "event": event,
        "source": source,
        "list": list_id,
        "record_key": name,
        "entity_id": "x",
        "entity_name": name,
        "baseline": baseline,
        "run_id": "r1",
    }
    if record is None:
        record = {"source": source, "list": list_id, "entity_name": name, **record_fields}
    evidence = Evidence(
        source_url="https://example.org/1", raw_sha256="0" * 64, run_id="r1", run_health=None,
        fetched_at=None,
    )  # fmt: skip
    return EventContext(event=ev, record=record, evidence=evidence)


# --- whole lists and scope ---------------------------------------------------------------


def test_no_entity_criteria_follows_whole_lists() -> None:
    assert match(sub(), ctx()) == Match(criterion="list", value="xmtravel.warning")
    assert match(sub(lists=["xmtravel.good"]), ctx()) is None
    assert match(sub(lists=["xmtravel.good"]), ctx(list_id="xmtravel.good")) == Match(
        "list", "xmtravel.good"
    )


def test_scope_sources() -> None:
    assert match(sub(sources=["xmtravel"]), ctx()) is not None
    assert match(sub(sources=["creditchina"]), ctx()) is None
    assert match(sub(sources=["creditchina"]), ctx(list_id="creditchina.sxbzxr")) is not None
    # No source field anywhere: the list id's prefix names it.
    bare = ctx(record={})
    del bare.event["source"]
    assert match(sub(sources=["xmtravel"]), bare) is not None
    assert match(sub(sources=["creditchina"]), bare) is None


def test_scope_list_kinds_from_record_then_registry() -> None:
    warning = sub(list_kinds=["warning"])
    assert match(warning, ctx(list_kind="warning")) is not None
    assert match(warning, ctx(list_kind="penalty")) is None  # the record's kind decides
    # A record that is gone: the registry's kind of the list.
    assert match(warning, ctx(record={})) is not None
    assert match(warning, ctx(record={}, list_id="xmtravel.good")) is None
    assert match(sub(list_kinds=["good"]), ctx(record={}, list_id="xmtravel.good")) is not None


def test_scope_event_kinds() -> None:
    s = sub(events=["delisted"])
    assert match(s, ctx(event="listed")) is None
    assert match(s, ctx(event="delisted")) == Match("list", "xmtravel.warning")
    health_only = sub(events=[], health=True)
    assert all(match(health_only, ctx(event=kind)) is None for kind in ("listed", "delisted"))


def test_baseline_events_only_when_asked() -> None:
    assert match(sub(), ctx(baseline=True)) is None
    assert match(sub(names=[HOTEL]), ctx(baseline=True)) is None
    assert match(sub(include_baseline=True), ctx(baseline=True)) is not None


def test_scope_filters_are_anded_with_entity_criteria() -> None:
    s = sub(lists=["xmtravel.good"], uscc=[USCC])
    assert match(s, ctx(uscc=USCC)) is None  # right company, wrong list
    assert match(s, ctx(uscc=USCC, list_id="xmtravel.good")) == Match("uscc", USCC)


# --- entity criteria ---------------------------------------------------------------------


def test_uscc() -> None:
    s = sub(uscc=[OTHER_USCC, USCC])
    assert match(s, ctx(uscc=USCC)) == Match("uscc", USCC)
    assert match(s, ctx(uscc=USCC.lower())) == Match("uscc", USCC)
    assert match(s, ctx(uscc=None, uscc_raw=USCC)) is None  # only the validated field counts
    assert match(s, ctx(uscc="91350200612003118A")) is None


def test_name_is_compared_by_name_key() -> None:
    s = sub(names=["廈門嘉禾酒店有限公司 "])  # traditional script, trailing space
    assert match(s, ctx("厦门嘉禾酒店有限公司")) == Match("name", "廈門嘉禾酒店有限公司")
    assert match(s, ctx("厦门 嘉禾酒店有限公司")) is not None
    assert match(s, ctx("厦门嘉禾酒店有限公司思明分公司")) is None  # exact means exact
    # The event has no name: the record's stored key still identifies the subject.
    gone = ctx(None, record={"entity_name_key": "厦门嘉禾酒店有限公司"})
    assert match(s, gone) == Match("name", "廈門嘉禾酒店有限公司")
    brackets = sub(names=["乐视影业（北京）有限公司"])
    assert match(brackets, ctx("乐视影业(北京)有限公司")) is not None


def test_fuzzy_branch_matches_with_score() -> None:
    s = sub(fuzzy_names=[HOTEL])
    found = match(s, ctx("厦门嘉禾酒店有限公司思明分公司"))
    assert found == Match("fuzzy_name", HOTEL, score=100.0)
    # and the other way round: subscribed to the branch, the parent's event
    branch = sub(fuzzy_names=["厦门嘉禾酒店有限公司思明分公司"])
    assert match(branch, ctx(HOTEL)) == Match(
        "fuzzy_name", "厦门嘉禾酒店有限公司思明分公司", score=100.0
    )


def test_fuzzy_abbreviation_and_variant() -> None:
    abbreviation = match(sub(fuzzy_names=["嘉禾酒店"]), ctx(HOTEL))
    assert abbreviation is not None and abbreviation.score == 100.0
    variant = match(sub(fuzzy_names=[HOTEL]), ctx("厦门市嘉禾酒店有限公司"))
    assert variant is not None and variant.criterion == "fuzzy_name"
    assert variant.score is not None and 90 <= variant.score < 100


@pytest.mark.parametrize(
    "other",
    [
        "厦门国际旅行社有限公司",  # unrelated
        "厦门建发旅游集团股份有限公司",  # unrelated
        "厦门嘉华酒店有限公司",  # same shape, different trade name
        "福州嘉禾酒店有限公司",  # same trade name, different region
    ],
)
def test_fuzzy_below_threshold_rejected(other: str) -> None:
    assert fuzzy_score(HOTEL, other) < 90
    assert match(sub(fuzzy_names=[HOTEL]), ctx(other)) is None


def test_names_sharing_all_but_their_trade_name_are_different_companies() -> None:
    # Region, industry and form alike; 杏林 is not 鹭江.
    assert fuzzy_score("厦门鹭江观光旅游股份有限公司", "厦门杏林观光旅游股份有限公司") < 50
    assert fuzzy_score("厦门鹭江观光旅游股份有限公司", "厦门鹭江观光旅游有限公司") >= 90


@pytest.mark.parametrize("generic", ["有限公司", "厦门", "厦门酒店有限公司", "酒店"])
def test_generic_fuzzy_names_do_not_match_everything(generic: str) -> None:
    assert match(sub(fuzzy_names=[generic]), ctx(HOTEL)) is None


def test_fuzzy_threshold_and_best_score() -> None:
    other = "福州嘉禾酒店有限公司"
    score = fuzzy_score(HOTEL, other)
    assert 80 < score < 90
    assert match(sub(fuzzy_names=[HOTEL], fuzzy_threshold=80), ctx(other)) == Match(
        "fuzzy_name", HOTEL, score=score
    )
    # Several fuzzy names: the best score is reported, with the name that earned it.
    s = sub(fuzzy_names=["厦门市嘉禾酒店有限公司", "嘉禾酒店", "无关公司"])
    assert match(s, ctx(HOTEL)) == Match("fuzzy_name", "嘉禾酒店", score=100.0)


def test_fuzzy_score_is_symmetric_and_folds() -> None:
    pairs = [(HOTEL, "厦门嘉禾酒店有限公司思明分公司"), (HOTEL, "厦門嘉禾酒店有限公司")]
    for a, b in pairs:
        assert fuzzy_score(a, b) == fuzzy_score(b, a) == 100.0
    assert fuzzy_score("", HOTEL) == 0.0


def test_text_words_split_compounds_at_their_own_boundaries() -> None:
    words = text_words(fold("擅自变更旅游行程"))
    assert {"擅自", "变更", "旅游", "行程"} <= words
    assert "游行" not in words
    assert {"导游证", "导游"} <= text_words(fold("未取得导游证从事导游活动"))


@pytest.mark.parametrize(
    ("keyword", "reason", "expected"),
    [
        ("导游", "未取得导游证从事导游活动", True),
        ("导游", "未取得导游证", True),  # inside the compound 导游证
        ("擅自变更", "擅自变更旅游行程", True),  # two tokens, both present
        ("擅自变更", "擅自增加购物场所，变更行程", True),  # tokens need not be adjacent
        ("变更旅游行程", "擅自变更旅游行程", True),
        ("导游证", "未取得导游证", True),
        ("游行", "擅自变更旅游行程", False),  # a substring, not a word
        ("擅自变更", "变更旅游行程", False),  # 擅自 missing
        ("罚款", "未取得导游证", False),
        ("導遊", "未取得导游证", True),  # folded: traditional script
    ],
)
def test_keyword_tokens(keyword: str, reason: str, expected: bool) -> None:
    found = match(sub(keywords=[keyword]), ctx(reason=reason))
    assert (found == Match("keyword", keyword)) is expected


def test_keyword_also_reads_measure() -> None:
    s = sub(keywords=["罚款"])
    assert match(s, ctx(reason="未取得导游证", measure="罚款人民币1万元")) == Match(
        "keyword", "罚款"
    )
    assert match(s, ctx(reason=None, measure=None)) is None


def test_region_prefix() -> None:
    assert match(sub(regions=["3502"]), ctx(region_code="350203")) == Match("region", "3502")
    assert match(sub(regions=["35"]), ctx(region_code="350203")) == Match("region", "35")
    assert match(sub(regions=["3501", "350203"]), ctx(region_code="350203")) == Match(
        "region", "350203"
    )
    assert match(sub(regions=["3501"]), ctx(region_code="350203")) is None
    assert match(sub(regions=["3502"]), ctx(region_code=None)) is None


def test_first_criterion_wins_in_fixed_order() -> None:
    everything = sub(
        regions=["3502"], keywords=["导游"], fuzzy_names=["嘉禾酒店"], names=[HOTEL], uscc=[USCC]
    )
    full = {"uscc": USCC, "reason": "未取得导游证", "region_code": "350203"}
    assert match(everything, ctx(**full)).criterion == "uscc"  # type: ignore[union-attr]
    full["uscc"] = None
    assert match(everything, ctx(**full)).criterion == "name"  # type: ignore[union-attr]
    assert match(everything, ctx("厦门嘉禾酒店有限公司湖里分公司", **full)) == Match(
        "fuzzy_name", "嘉禾酒店", score=100.0
    )
    assert match(everything, ctx("某某", **full)) == Match("keyword", "导游")
    full["reason"] = "超范围经营"
    assert match(everything, ctx("某某", **full)) == Match("region", "3502")
    full["region_code"] = "110101"
    assert match(everything, ctx("某某", **full)) is None


# --- robustness and determinism ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [HOSTILE, "", " ", "\u3000\u200b", "\x00\x01\x7f", "🏨" * 50, "a" * 5000, "()（）【】"],
)
def test_hostile_names_do_not_crash(name: str) -> None:
    s = sub(
        names=[HOTEL], fuzzy_names=[HOTEL, "嘉禾"], keywords=["导游", "DROP TABLE"], regions=["35"]
    )
    context = ctx(name, reason=name, measure=name, region_code=name, uscc=name)
    found = match(s, context)
    assert found is None or found.criterion in {"fuzzy_name", "keyword"}
    assert match(sub(names=[HOSTILE]), ctx(HOSTILE)) == Match("name", HOSTILE)
    hostile_fuzzy = match(sub(fuzzy_names=[HOSTILE]), ctx(HOSTILE))
    assert hostile_fuzzy is not None and hostile_fuzzy.score == 100.0


def test_non_string_fields_are_ignored() -> None:
    weird = ctx(record={"uscc": 123, "entity_name": ["x"], "reason": {"a": 1}, "region_code": 35})
    s = sub(uscc=[USCC], names=[HOTEL], keywords=["导游"], regions=["35"])
    assert match(s, weird) is not None  # the event's own entity_name still matches by name
    weird.event["entity_name"] = None
    assert match(s, weird) is None


def test_match_all_groups_by_subscription_and_is_deterministic() -> None:
    subs = [
        sub(id="names", names=[HOTEL]),
        sub(id="region", regions=["3502"]),
        sub(id="good", lists=["xmtravel.good"]),
    ]
    contexts = [
        ctx(HOTEL, region_code="350203"),
        ctx("别家公司", region_code="350206"),
        ctx(HOTEL, list_id="xmtravel.good"),
        ctx(HOTEL, baseline=True),
    ]
    result = match_all(subs, contexts)
    assert [(s.id, m.context.event["entity_name"]) for s, m in result] == [
        ("names", HOTEL),
        ("names", HOTEL),
        ("region", HOTEL),
        ("region", "别家公司"),
        ("good", HOTEL),
    ]
    assert result[0][1] == MatchedEvent(context=contexts[0], match=Match("name", HOTEL))
    assert result[2][1].match == Match("region", "3502")
    assert match_all(subs, contexts) == result
    assert match_all([], contexts) == [] and match_all(subs, []) == []
