"""Item pipelines: normalise what spiders emit, then stage it for change detection."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from scrapy.exceptions import DropItem
from scrapy.spiders import Spider

from core.items import Announcement, ListPage, RawEntry
from core.normalise import content_hash, normalise_entry
from crawlers.runcontext import RunComponent


@dataclass
class NormalisedRecord:
    record: dict[str, Any]
    content_hash: str


@dataclass
class NormalisedRemoval:
    record: dict[str, Any]


class NormalisePipeline(RunComponent):
    """``RawEntry`` → schema record. An entry that cannot be normalised (``malformed``) or
    lacks a required field (``layout_drift``) marks its list unhealthy instead of silently
    going missing or turning up under another key."""

    def process_item(self, item: Any, spider: Spider | None = None) -> Any:
        if not isinstance(item, RawEntry):
            return item
        ctx = self.run
        lst = ctx.source.list(item.list)
        try:
            record = normalise_entry(
                item,
                list_kind=lst.list_kind,
                record_key_rule=lst.record_key,
                domain=lst.domain or ctx.source.domain,
                label_overrides=ctx.source.label_overrides,  # the source's `labels:` block
                validity_years=lst.validity_years,
            )
        except Exception as exc:
            ctx.writer.add_fetch(
                url=item.source_url,
                outcome="malformed",
                list_id=item.list,
                detail=f"normalise failed: {exc!r}"[:1000],
            )
            raise DropItem(f"cannot normalise {item.source_url}: {exc!r}") from exc
        if item.removal:
            # A removal row only has to name its subject: it ends an entry, lists nothing.
            return NormalisedRemoval(record)
        missing = [name for name in lst.required_fields if record.get(name) is None]
        if missing:
            # Staged under a fallback key it would read as a new entry; hold it back instead.
            ctx.writer.add_fetch(
                url=item.source_url,
                outcome="layout_drift",
                list_id=item.list,
                detail=f"required field(s) {', '.join(missing)} not found",
            )
            raise DropItem(f"{item.source_url} lacks {', '.join(missing)}")
        return NormalisedRecord(record, content_hash(record))


class StagePipeline(RunComponent):
    """Writes records, removal rows, list pages and announcements to the run's tables."""

    def process_item(self, item: Any, spider: Spider | None = None) -> Any:
        writer = self.run.writer
        if isinstance(item, NormalisedRecord):
            writer.add_record(item.record, item.content_hash)
        elif isinstance(item, NormalisedRemoval):
            writer.add_removal(item.record)
        elif isinstance(item, Announcement):
            writer.add_announcement(
                source=item.source,
                list=item.list,
                url=item.url,
                sha256=item.sha256,
                title=item.title,
                kind=item.kind,
                state=item.state,
                published_on=item.published_on,
                rows=item.rows,
                attachments=[asdict(a) for a in item.attachments],
                error=item.error,
            )
        elif isinstance(item, ListPage):
            writer.add_list_page(
                list=item.list,
                url=item.url,
                page_no=item.page_no,
                rows=item.rows,
                declared_total=item.declared_total,
                declared_pages=item.declared_pages,
                sha256=item.sha256,
            )
        return item
