"""A subscription's alerts as an Atom feed, as its channels were told them."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, Response

from alerts.feed import feed_document
from alerts.subscriptions import Subscription
from storage.outbox import subscription_rows
from web.site import SiteDep, public_base

router = APIRouter()


@router.get(
    "/feeds/{subscription_id}.atom",
    tags=["files"],
    summary="A subscription's alerts as an Atom feed, newest first",
    description="As the subscription's channels were told them, each entry linking to the "
    "entity's page; redacted like every page when the server redacts.",
    response_class=Response,
    responses={200: {"content": {"application/atom+xml": {}}}, 404: {}},
)
def feed(request: Request, site: SiteDep, subscription_id: str) -> Response:
    with site.engine.connect() as conn:
        row = next((r for r in subscription_rows(conn) if r.id == subscription_id), None)
        if row is None:
            raise HTTPException(404, "no such subscription")
        subscription = Subscription.from_dict(row.data)
        base = public_base(request)
        document = feed_document(
            conn,
            subscription,
            redact=site.redact,
            base_url=base,
            self_url=f"{base}/feeds/{quote(subscription.id, safe='')}.atom",
        )
    return Response(document, media_type="application/atom+xml")
