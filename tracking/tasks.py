"""Celery tasks of the tracking app (the beat row is created by migration 0002)."""

from celery import shared_task

from . import imap, live, outbound
from .services import opens_drain, opens_pending

# A bound on one run: at 5,000 opens a batch, 50 batches are 250,000 opens; what is left waits
# for the next run, 2 s later.
DRAIN_MAX_BATCHES = 50


@shared_task
def drain_opens() -> int:
    """Every 2 s: write the opens the pixel buffered in Redis, batch after batch until the buffer is
    empty (bounded). Returns how many events were written."""
    written = 0
    for _ in range(DRAIN_MAX_BATCHES):
        before = opens_pending()
        if not before:
            break
        written += opens_drain()
        if opens_pending() >= before:  # another drainer holds the lock (or the pixel outpaces us)
            break
    return written


@shared_task
def check_deliverability(campaign_id: str, mailbox_id: int | None = None) -> None:
    """The trailing check of a burst of bounces or complaints (tracking/deliverability.py)."""
    from .deliverability import deliverability_check

    deliverability_check(campaign_id=campaign_id, mailbox_id=mailbox_id)


@shared_task
def publish_live() -> dict:
    """Every second: campaign.progress for each campaign whose facts changed, queue.state when the
    queue did (tracking/live.py)."""
    return live.live_publish()


@shared_task
def deliver_webhooks() -> dict:
    """A wake-up of the webhooks queue (after an event, and every 5 s from beat): deliver what is due."""
    return outbound.webhooks_deliver_due()


@shared_task
def webhooks_upkeep() -> dict:
    """Every minute: give up, disable, delete old, wake (tracking/outbound.py)."""
    return outbound.webhooks_upkeep()


@shared_task
def poll_imap() -> dict:
    """Every minute: read new mail in every IMAP account and record replies (tracking/imap.py)."""
    return imap.imap_poll_all()
