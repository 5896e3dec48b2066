"""Subscriptions validate everything on construction, and their file forms round-trip: a
typo must fail loudly instead of silently widening or narrowing who is alerted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from alerts.subscriptions import (
    Subscription,
    SubscriptionError,
    dump_file,
    load_file,
)
from core.schema import EVENT_KINDS

USCC_A = "91350200612003118E"
USCC_B = "91350206155012345W"
BAD_USCC = "91350200612003118A"  # check character wrong


def sub(**fields: Any) -> Subscription:
    data: dict[str, Any] = {"id": "desk", "channels": ["email:desk@example.org"]}
    data.update(fields)
    return Subscription.from_dict(data)


def full() -> Subscription:
    return sub(
        language="en",
        mode="daily",
        timezone="Europe/Berlin",
        uscc=[USCC_A.lower()],
        names=["厦门嘉禾酒店有限公司"],
        fuzzy_names=["嘉禾酒店"],
        fuzzy_threshold=85,
        keywords=["导游", "擅自变更"],
        regions=["3502", "350203"],
        sources=["xmtravel"],
        lists=["xmtravel.warning", "mct_tourism.blacklist"],
        list_kinds=["warning", "blacklist"],
        events=["listed", "relisted"],
        include_baseline=True,
        health=True,
    )


def test_defaults_and_normalisation() -> None:
    s = sub(uscc=[f" {USCC_A.lower()} ", USCC_A], channels="email:desk@example.org")
    assert s.channels == ("email:desk@example.org",)  # a bare string is a one-item list
    assert s.uscc == (USCC_A,)  # upper-cased, trimmed, deduplicated
    assert (s.language, s.mode, s.timezone) == ("zh", "immediate", "Asia/Shanghai")
    assert s.events == EVENT_KINDS
    assert s.fuzzy_threshold == 90.0
    assert not s.include_baseline and not s.health
    assert sub().follows_lists
    assert not full().follows_lists


def test_a_maintainers_subscription_may_hear_only_of_health() -> None:
    s = Subscription(id="ops", channels=("log:",), health=True, events=())
    assert s.events == () and s.health
    assert Subscription.from_dict(s.as_dict()) == s


def test_direct_construction_validates_too() -> None:
    s = Subscription(id="x", channels=("log:",), regions=("3502",))
    assert s.regions == ("3502",)
    with pytest.raises(SubscriptionError, match="mode"):
        Subscription(id="x", channels=("log:",), mode="weekly")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"uscc": [BAD_USCC]}, "uscc '91350200612003118A' is not a valid"),
        ({"uscc": ["00000000000000000X"]}, "not a valid"),
        ({"mode": "weekly"}, "mode 'weekly' is not one of immediate, hourly, daily"),
        ({"language": "fr"}, "language 'fr'"),
        ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is not a known zoneinfo"),
        ({"timezone": "../etc/passwd"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"lists": ["xmtravel.nope"]}, "unknown list 'xmtravel.nope'"),
        ({"lists": ["warning"]}, "did you mean xmtravel.warning"),
        ({"sources": ["nowhere"]}, "unknown source 'nowhere'"),
        ({"list_kinds": ["grey"]}, "list_kinds item 'grey'"),
        ({"events": ["removed"]}, "events item 'removed'"),
        ({"events": []}, "events must name at least one"),
        ({"channels": []}, "channels must name at least one"),
        ({"channels": [""]}, "channels items must be non-empty strings"),
        ({"regions": ["35020"]}, "region '35020'"),
        ({"regions": ["35ab"]}, "region '35ab'"),
        ({"keywords": ["，。！"]}, "keyword '，。！' has no words"),
        ({"names": ["   "]}, "names items must be non-empty"),
        ({"fuzzy_threshold": 0}, "fuzzy_threshold 0"),
        ({"fuzzy_threshold": 101}, "fuzzy_threshold 101"),
        ({"fuzzy_threshold": "90"}, "fuzzy_threshold must be a number"),
        ({"health": "yes"}, "health must be true or false"),
        ({"names": {"a": 1}}, "names must be a list of strings"),
        ({"nmaes": ["厦门嘉禾酒店有限公司"]}, "unknown field(s) 'nmaes'"),
    ],
)
def test_validation_errors_name_the_subscription_and_field(
    fields: dict[str, Any], needle: str
) -> None:
    with pytest.raises(SubscriptionError) as err:
        sub(**fields)
    assert "subscription 'desk'" in str(err.value)
    assert needle in str(err.value)


@pytest.mark.parametrize("bad_id", ["", "Desk", "-desk", "desk team", "办公室", "a" * 65, 7])
def test_id_must_be_a_slug(bad_id: Any) -> None:
    with pytest.raises(SubscriptionError, match="must be a slug"):
        sub(id=bad_id)


def test_required_fields() -> None:
    with pytest.raises(SubscriptionError, match="missing 'channels'"):
        Subscription.from_dict({"id": "desk"})
    with pytest.raises(SubscriptionError, match="missing 'id'"):
        Subscription.from_dict({"channels": ["log:"]})
    with pytest.raises(SubscriptionError, match="must be a mapping"):
        Subscription.from_dict(["id", "desk"])  # type: ignore[arg-type]


def test_dict_and_json_round_trip() -> None:
    s = full()
    data = s.as_dict()
    assert data["uscc"] == [USCC_A]
    assert Subscription.from_dict(data) == s
    assert Subscription.from_dict(json.loads(json.dumps(data, ensure_ascii=False))) == s
    assert Subscription.from_dict(sub().as_dict()) == sub()


def test_yaml_round_trip(tmp_path: Path) -> None:
    subs = [full(), sub(id="maintainers", health=True, sources=["xmtravel"])]
    path = tmp_path / "subs.yml"
    dump_file(subs, path)
    assert "厦门嘉禾酒店有限公司" in path.read_text(encoding="utf-8")  # readable, not escaped
    assert load_file(path) == subs


TOML = f"""
[[subscriptions]]
id = "xm-hotels"
channels = ["email:desk@example.org"]
mode = "daily"
uscc = ["{USCC_B}"]
names = ["厦门嘉禾酒店有限公司"]
fuzzy_names = ["嘉禾酒店"]
keywords = ["导游"]
regions = [3502]
lists = ["xmtravel.warning"]
events = ["listed", "relisted"]

[[subscriptions]]
id = "maintainers"
channels = "webhook:https://hooks.example.org/cw"
language = "en"
health = true
"""


def test_toml_file_form_equals_yaml(tmp_path: Path) -> None:
    toml_path = tmp_path / "subs.toml"
    toml_path.write_text(TOML, encoding="utf-8")
    subs = load_file(toml_path)
    assert [s.id for s in subs] == ["xm-hotels", "maintainers"]
    assert subs[0].regions == ("3502",)  # an unquoted number is read as its digits
    assert subs[0].uscc == (USCC_B,)
    assert subs[1].channels == ("webhook:https://hooks.example.org/cw",)
    yaml_path = tmp_path / "subs.yaml"
    dump_file(subs, yaml_path)
    assert load_file(yaml_path) == subs


def test_module_docstring_example_loads(tmp_path: Path) -> None:
    import alerts.subscriptions as module

    doc = module.__doc__ or ""
    block = doc.split("a subscription without anyone noticing; ids must be unique within a file::")[
        1
    ].split("The same in TOML::")[0]
    path = tmp_path / "example.yml"
    path.write_text(block, encoding="utf-8")
    assert [s.id for s in load_file(path)] == ["xm-hotels", "maintainers"]


def write(tmp_path: Path, text: str, name: str = "subs.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "subscriptions:\n  - id: a\n    channels: [log]\n    list: [xmtravel.warning]\n",
    )
    with pytest.raises(SubscriptionError) as err:
        load_file(path)
    assert "entry 1" in str(err.value) and "'list'" in str(err.value)
    assert str(path) in str(err.value)


def test_unknown_top_level_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "subscriptions: []\nsubscription:\n  - id: a\n")
    with pytest.raises(SubscriptionError, match="unknown top-level key"):
        load_file(path)


def test_duplicate_id_in_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "subscriptions:\n"
        "  - {id: a, channels: [log]}\n"
        "  - {id: b, channels: [log]}\n"
        "  - {id: a, channels: [log], mode: daily}\n",
    )
    with pytest.raises(SubscriptionError, match="'a' is used twice"):
        load_file(path)
    with pytest.raises(SubscriptionError, match="used twice"):
        dump_file([sub(), sub()], tmp_path / "out.yml")


def test_duplicate_key_in_yaml_mapping(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "subscriptions:\n  - id: a\n    channels: [log]\n    regions: ['3502']\n"
        "    regions: ['35']\n",
    )
    with pytest.raises(SubscriptionError, match="duplicate key 'regions'"):
        load_file(path)


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("subs.yml", "- id: a\n", "top-level 'subscriptions'"),
        ("subs.yml", "subscriptions: {id: a}\n", "must be a list"),
        ("subs.yml", "subscriptions:\n  - [a]\n", "must be a mapping"),
        ("subs.yml", "subscriptions: [\n", "not valid YML"),
        ("subs.toml", "[[subscriptions]\n", "not valid TOML"),
        ("subs.json", "{}", "expected a .yml, .yaml or .toml"),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, text: str, needle: str) -> None:
    with pytest.raises(SubscriptionError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        load_file(write(tmp_path, text, name))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SubscriptionError, match="cannot read"):
        load_file(tmp_path / "nope.yml")


def test_docs_example_loads(tmp_path: Path) -> None:
    """The subscriptions file shown in docs/alerts.md (its first YAML block) loads."""
    page = (Path(__file__).parent.parent / "docs" / "alerts.md").read_text(encoding="utf-8")
    block = page.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = write(tmp_path, block)
    subscriptions = load_file(path)
    assert [s.id for s in subscriptions] == ["xm-hotels", "maintainers"]
    assert subscriptions[1].health and subscriptions[1].events == ()
