"""GB/T 2260 division codes and names: which 6-digit codes exist, and addresses → codes.

The table (``lexicon/regions.txt``) is generated from python-stdnum's ``cn/loc.dat`` by
``build_regions.py`` and shipped with the package. It holds every code assigned since 1980,
because ID numbers and old registrations carry codes of counties that have since been merged;
only names still in use are matched in text.

Loading is lazy and happens once per process (first call), like jieba's and OpenCC's
dictionaries: the functions below do no I/O per call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

# Names that are placeholders in the table, not places one can write in an address or a name.
GENERIC_NAMES = frozenset(
    {"市辖区", "县", "市区", "郊区", "城区", "矿区", "新区", "省直辖县级行政单位",
     "省直辖县级行政区划", "自治区直辖县级行政区划", "直辖县级行政区划", "省直辖行政单位"}
)  # fmt: skip

# The 56 officially recognised ethnic groups, for shortening 自治区/州/县/旗 names.
ETHNIC_GROUPS = (
    "汉", "蒙古", "回", "藏", "维吾尔", "苗", "彝", "壮", "布依", "朝鲜", "满", "侗", "瑶", "白",
    "土家", "哈尼", "哈萨克", "傣", "黎", "傈僳", "佤", "畲", "高山", "拉祜", "水", "东乡",
    "纳西", "景颇", "柯尔克孜", "土", "达斡尔", "仫佬", "羌", "布朗", "撒拉", "毛南", "仡佬",
    "锡伯", "阿昌", "普米", "塔吉克", "怒", "乌孜别克", "俄罗斯", "鄂温克", "德昂", "保安",
    "裕固", "京", "塔塔尔", "独龙", "鄂伦春", "赫哲", "门巴", "珞巴", "基诺",
)  # fmt: skip
# Trailing ethnic names of autonomous areas; 新疆维吾尔自治区 is the one written without 族.
_ETHNIC_RE = re.compile(
    "(?:(?:" + "|".join(sorted(ETHNIC_GROUPS, key=len, reverse=True)) + ")族)+$|维吾尔$"
)
_SHORT_SUFFIX_RE = re.compile(r"(?:特别行政区|自治区|自治州|自治县|自治旗|地区|省|市|盟|区|县|旗)$")

Level = int  # 1 province, 2 prefecture, 3 county


@dataclass(frozen=True)
class RegionTable:
    """Codes, current names and the name → codes index used for matching text."""

    all_codes: frozenset[str]
    current: dict[str, str]  # code → name, codes still in use
    by_name: dict[str, tuple[str, ...]]  # full name (any code) or short name (current) → codes
    short_county_names: frozenset[str]  # short forms that only ever name a county
    max_len: int


def level(code: str) -> Level:
    """1 for ``350000``, 2 for ``350200``, 3 for ``350203``."""
    if code.endswith("0000"):
        return 1
    if code.endswith("00"):
        return 2
    return 3


def short_name(name: str) -> str | None:
    """``广西壮族自治区`` → ``广西``, ``厦门市`` → ``厦门``, ``思明区`` → ``思明``.

    None when shortening leaves fewer than two characters (``和县`` → ``和`` is a word, not a
    place) or changes nothing.
    """
    base = _SHORT_SUFFIX_RE.sub("", name)
    base = _ETHNIC_RE.sub("", base) if "自治" in name else base
    if len(base) < 2 or base == name:
        return None
    return base


def _load() -> RegionTable:
    text = (resources.files(__package__) / "lexicon" / "regions.txt").read_text(encoding="utf-8")
    all_codes: set[str] = set()
    current: dict[str, str] = {}
    by_name: dict[str, list[str]] = {}
    short_forms: set[str] = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        code, name, in_use, former = line.split("\t")
        all_codes.add(code)
        # A former name is still matched in full (无为县 in an old company name, 杏林区 in
        # an old address), never by its short form, as likely to be a trade name (杏林).
        forms: list[str | None] = [*former.split(",")] if former else []
        if in_use == "1" and name not in GENERIC_NAMES:
            current[code] = name
            short = short_name(name)
            forms += [name, short]
            if short and level(code) == 3:
                short_forms.add(short)
        elif in_use != "1":
            forms.append(name)
        for form in forms:
            if not form or form in GENERIC_NAMES:
                continue
            if code not in by_name.setdefault(form, []):
                by_name[form].append(code)
    full_names = set(current.values())
    return RegionTable(
        all_codes=frozenset(all_codes),
        current=current,
        by_name={name: tuple(codes) for name, codes in by_name.items()},
        short_county_names=frozenset(short_forms - full_names),
        max_len=max(map(len, by_name)),
    )


@lru_cache(maxsize=1)
def table() -> RegionTable:
    """The region table, read from the package once per process."""
    return _load()


def is_known_code(code: str | None) -> bool:
    """A 6-digit code that GB/T 2260 has assigned (now or in the past)."""
    return bool(code) and code in table().all_codes


def _within(code: str, parent: str | None) -> bool:
    if parent is None:
        return True
    lvl = level(parent)
    return code[: 2 * lvl] == parent[: 2 * lvl] and code != parent


def pick(codes: tuple[str, ...], parent: str | None) -> str | None:
    """The one code under ``parent``; None when none or several fit (never a guess).

    A division still in use wins over a former one of the same name. A city and its own
    district sharing a short name (克拉玛依市 / 克拉玛依区) give the city: the less specific
    code is true either way.
    """
    fitting = [c for c in codes if _within(c, parent)]
    current = table().current
    if any(c in current for c in fitting):
        fitting = [c for c in fitting if c in current]
    if len(fitting) == 1:
        return fitting[0]
    top = min(fitting, key=level, default=None)
    if top is not None and all(c == top or _within(c, top) for c in fitting):
        return top
    return None


def read_regions(text: str) -> tuple[str | None, int]:
    """The most specific division named at the start of ``text``, and how many characters
    name it: each further name must lie inside the one before.

    ``江苏省徐州市泉山区泰山街道…`` → (``320311``, 9). A name that is ambiguous without a
    parent stops the reading at the parent. A county's short form (``同安``) counts only
    after its city: alone it is as likely a street or a trade name.
    """
    t = table()
    pos, found = 0, None
    while pos < len(text):
        step = None
        for length in range(min(t.max_len, len(text) - pos), 1, -1):
            name = text[pos : pos + length]
            codes = t.by_name.get(name)
            if codes and not (found is None and name in t.short_county_names):
                code = pick(codes, found)
                if code is not None:
                    step = (length, code)
                    break
        if step is None:
            break
        pos += step[0]
        found = step[1]
    return found, pos


@lru_cache(maxsize=65536)
def region_from_address(address: str | None) -> str | None:
    """The division an address names: ``厦门市同安区椰风路143号`` → ``350212``,
    ``江苏省徐州市泉山区…`` → ``320311`` (see ``read_regions``)."""
    if not address:
        return None
    return read_regions(re.sub(r"\s+", "", address))[0]
