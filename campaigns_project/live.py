"""Live operations' change marks: where a fact changes, its campaign (or the queue) is marked
changed, and the publisher (tracking.live.live_publish, a beat task every second) sends one
`campaign.progress` per marked campaign per tick. So a million batch outcomes are a million cheap
SADDs of the same few ids, never a million messages.

Model-free and at the bottom of the import graph, so campaigns and queue_control can call it.
Marks are set after the surrounding transaction commits (a rolled-back change publishes nothing,
and the publisher reads what committed) and never raise: a live view that cannot be told must not
stop the engine; the publisher also refreshes every running campaign every LIVE_REFRESH_SECONDS.
"""

import logging
from collections.abc import Iterable

import redis
from django.db import transaction
from django.dispatch import Signal

from .redis import get_redis, rkey

logger = logging.getLogger(__name__)


def dirty_campaigns_key() -> str:
    return rkey("live", "dirty")


def dirty_queue_key() -> str:
    return rkey("live", "queue-dirty")


def _mark(ids: list[str], queue: bool) -> None:
    try:
        pipe = get_redis().pipeline(transaction=False)
        if ids:
            pipe.sadd(dirty_campaigns_key(), *ids)
        if queue:
            pipe.set(dirty_queue_key(), "1")
        pipe.execute()
    except redis.RedisError:
        logger.debug("Could not mark live changes %s (queue %s)", ids, queue, exc_info=True)


def campaigns_changed(campaign_ids: Iterable) -> None:
    """After commit: these campaigns' progress changed (status, phase, counts)."""
    ids = [str(campaign_id) for campaign_id in campaign_ids]
    if ids:
        transaction.on_commit(lambda: _mark(ids, False))


def campaign_changed(campaign_id) -> None:
    campaigns_changed([campaign_id])


def queue_changed() -> None:
    """After commit: the queue latch or a breaker changed."""
    transaction.on_commit(lambda: _mark([], True))


# Sent inside the transaction by code that writes campaign history rows in bulk, bypassing
# save() (the queue cascade's INSERT … SELECT): the receivers (tracking.receivers) emit what a
# saved CampaignEvent would. kwargs: campaign_ids, action, from_status, to_status, reason.
campaign_history_inserted = Signal()


def campaign_history_bulk(*, campaign_ids: list, action: str, from_status: str, to_status: str, reason: str) -> None:
    campaigns_changed(campaign_ids)
    campaign_history_inserted.send(
        sender=None,
        campaign_ids=list(campaign_ids),
        action=action,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
    )
