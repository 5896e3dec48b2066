"""Field order of the public schema (SCHEMA.md), for exports and event output."""

# Bumped when a field of docs/SCHEMA.md is added, renamed or changes meaning; in every
# snapshot manifest.
SCHEMA_VERSION = "1.0"

RECORD_FIELDS = (
    "source", "list", "list_kind", "record_key", "entity_id", "entity_name", "entity_name_key",
    "entity_type", "uscc", "uscc_raw", "uscc_valid", "id_number_masked", "legal_representative",
    "registration_no", "region_code", "case_number", "case_number_key", "title", "reason",
    "reason_category", "basis", "measure", "penalty_types", "fine_yuan", "confiscated_yuan",
    "authority", "decided_on", "published_on", "valid_until", "status", "first_seen",
    "last_seen", "source_url", "raw_sha256", "extra",
)  # fmt: skip

# What an event says happened to an entry (SCHEMA.md, lifecycle), in the order alerts list them.
EVENT_KINDS = ("listed", "relisted", "modified", "delisted")

EVENT_FIELDS = (
    "event_id", "event", "source", "list", "record_key", "entity_id", "entity_name",
    "case_number", "title", "cause", "changes", "baseline", "run_id", "at", "evidence",
)  # fmt: skip

# Lifecycle and provenance fields are not content: a change to them is no `modified`.
# `extra.pages` lists the other pages an entry was read from: provenance too.
NON_CONTENT_FIELDS = frozenset({"status", "first_seen", "last_seen", "source_url", "raw_sha256"})
PROVENANCE_EXTRA_KEYS = frozenset({"pages"})


def content_of(record: dict) -> dict:
    """The content fields of a record, as compared by change detection."""
    content = {k: v for k, v in record.items() if k not in NON_CONTENT_FIELDS}
    if isinstance(content.get("extra"), dict):
        content["extra"] = {
            k: v for k, v in content["extra"].items() if k not in PROVENANCE_EXTRA_KEYS
        }
    return content
