"""Scrapy's spider loader for creditwatch: one spider per registered source, built from its room.

Sources live in rooms (``crawlers/sources/<id>/``): a ``source.yml`` and, for a portal with
code of its own, a ``spider.py``. There are no per-source spider modules to scan, so Scrapy's
``SpiderLoader`` (which walks ``SPIDER_MODULES``) is replaced by this one
(``SPIDER_LOADER_CLASS``). For a source id it returns

* the spider class of the room's ``spider.py`` when there is one (with a private registry,
  ``CREDITWATCH_SOURCES_DIR``, a room holding only ``source.yml`` uses the shipped room's
  ``spider.py`` of the same id), else
* the family spider the declaration names (``spider: announcements``),

subclassed with ``name`` and ``source_id`` set when the class does not already carry them.
So ``scrapy list``, ``scrapy crawl <id>`` and ``creditwatch crawl`` find every source the
registry loads, and a source of a known pattern needs no Python at all.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from scrapy import Request
from scrapy.settings import BaseSettings

from core.registry import (
    SHIPPED_SOURCES,
    SPIDER_FAMILIES,
    RegistryError,
    SourceDef,
    get_source,
    load_registry,
)
from crawlers.spiders.base import PortalSpider

ROOM_SPIDER = "spider.py"
SHIPPED_PACKAGE = "crawlers.sources"  # rooms of the shipped registry import as its subpackages
PRIVATE_PACKAGE = "creditwatch_rooms"  # module prefix for rooms of another sources directory

# Family name (the registry's ``spider:`` values) → "module:class".
FAMILIES: dict[str, str] = {
    "announcements": "crawlers.spiders.announcements:AnnouncementSpider",
    "json_api": "crawlers.spiders.json_api:JsonApiSpider",
    "html_list": "crawlers.spiders.html_list:HtmlListSpider",
    "creditsearch": "crawlers.spiders.creditsearch:CreditSearchSpider",
}


class SpiderNotFound(KeyError):
    """No spider for a name: Scrapy's loader contract is a KeyError. ``str()`` is the message
    itself (a plain KeyError would print it quoted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def room_spider_path(source: SourceDef) -> Path | None:
    """The ``spider.py`` serving ``source``: its own room's, else the shipped room's of the
    same id (a private registry may hold declarations only). None when neither exists."""
    rooms = [source.room] if source.room is not None else []
    rooms.append(SHIPPED_SOURCES / source.id)
    for room in rooms:
        path = room / ROOM_SPIDER
        if path.is_file():
            return path
    return None


def _import_room(path: Path) -> ModuleType:
    """The room's ``spider.py`` as a module. Shipped rooms import by their package name
    (``crawlers.sources.<id>.spider``), so tests that import it by name get the same
    classes; other rooms load from their file under a name of their own."""
    if path.parent.parent == SHIPPED_SOURCES:
        return importlib.import_module(f"{SHIPPED_PACKAGE}.{path.parent.name}.spider")
    # Named by the room and its folder: two registries may each hold a room of one id.
    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=6).hexdigest()
    name = f"{PRIVATE_PACKAGE}.{path.parent.name}_{digest}.spider"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _room_class(path: Path) -> type[PortalSpider]:
    """The one ``PortalSpider`` subclass ``spider.py`` defines (imported bases do not count)."""
    module = _import_room(path)
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, PortalSpider)
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]
    if len(found) != 1:
        names = ", ".join(cls.__name__ for cls in found) or "none"
        raise RegistryError(f"{path}: defines {len(found)} PortalSpider classes ({names}), not 1")
    return found[0]


def _family_class(family: str) -> type[PortalSpider]:
    module_name, _, class_name = FAMILIES[family].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (inspect.isclass(cls) and issubclass(cls, PortalSpider)):
        raise TypeError(f"{FAMILIES[family]} is not a PortalSpider")
    return cls


def spider_class(source: SourceDef) -> type[PortalSpider]:
    """The spider class serving ``source``, bound to it (``name`` and ``source_id``)."""
    path = room_spider_path(source)
    if path is not None:
        base, origin = _room_class(path), str(path)
    elif source.spider is not None:
        base, origin = _family_class(source.spider), FAMILIES[source.spider]
    else:
        where = source.room / "source.yml" if source.room else f"source {source.id!r}"
        raise RegistryError(
            f"{where}: no spider: add {ROOM_SPIDER} to the room or declare a family "
            f"(spider: {' | '.join(SPIDER_FAMILIES)})"
        )
    own = vars(base)
    if own.get("name") == source.id and own.get("source_id") == source.id:
        return base
    for attribute in ("name", "source_id"):
        if attribute in own and own[attribute] != source.id:
            raise RegistryError(
                f"{origin}: {base.__name__}.{attribute} is {own[attribute]!r}, "
                f"but its room is {source.id!r}"
            )
    attributes: dict[str, Any] = {
        "name": source.id,
        "source_id": source.id,
        "__module__": base.__module__,
        "__doc__": f"{base.__name__} for the source {source.id!r} ({source.name_en}).",
    }
    return type(_class_name(source.id), (base,), attributes)


def _class_name(source_id: str) -> str:
    """``mct_tourism`` → ``MctTourismSpider``."""
    return "".join(part.capitalize() for part in source_id.split("_") if part) + "Spider"


class SourceSpiderLoader:
    """Scrapy's ``ISpiderLoader`` over the registry: spider names are source ids.

    Classes are built on first use and kept, so every ``load`` of a name returns the same
    class. A source whose declaration does not load is not listed; loading it raises a
    KeyError carrying the registry's message (file and line)."""

    def __init__(self, settings: BaseSettings | None = None) -> None:
        self.settings = settings
        self._classes: dict[str, type[PortalSpider]] = {}

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> SourceSpiderLoader:
        return cls(settings)

    def list(self) -> list[str]:
        """Every source the registry loads, by id."""
        return sorted(load_registry())

    def load(self, spider_name: str) -> type[PortalSpider]:
        if spider_name not in self._classes:
            try:
                self._classes[spider_name] = spider_class(get_source(spider_name))
            except RegistryError as exc:  # unknown, broken, or served by no spider
                raise SpiderNotFound(f"Spider not found: {exc}") from None
        return self._classes[spider_name]

    def find_by_request(self, request: Request) -> list[str]:
        """The sources whose spider says it handles ``request`` (by its allowed domains)."""
        return [name for name in self.list() if self.load(name).handles_request(request)]
