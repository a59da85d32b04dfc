"""Live operations: the `campaign.progress` and `queue.state` messages, and their publisher.

One message format (the envelope: type, version, sent_at, data) for the WebSocket and for
`GET /api/v1/campaigns/{id}/progress`. Facts mark their campaign changed
(campaigns_project.live); `live_publish`, a beat task every second on the housekeeping queue,
sends one message per marked campaign to the groups that may see it, so a campaign gets at most
one message a second however many outcomes it records. Running campaigns are also republished
every LIVE_REFRESH_SECONDS, so the rate and the ETA stay true when nothing moves.

Figures come from counters, never from a COUNT over leads or recipients: the phase rows
(CampaignPhase) and tracking's counters (CampaignCounter), a few indexed reads per batch of
campaigns. The send rate is measured over a sliding window of samples kept in Redis.
"""

import asyncio
import logging
import time
import uuid

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Prefetch
from django.utils import timezone

from campaigns.models import Campaign, CampaignPhase
from campaigns.selectors import campaign_progress
from campaigns.states import CampaignStatus, Phase, pause_fields
from campaigns_project.live import dirty_campaigns_key, dirty_queue_key
from campaigns_project.redis import get_redis, rkey
from queue_control.selectors import queue_status

from .models import CampaignCounter

logger = logging.getLogger(__name__)

VERSION = 1
CAMPAIGN_PROGRESS = "campaign.progress"
QUEUE_STATE = "queue.state"
PLATFORM_GROUP = "live.platform"
QUEUE_GROUP = "live.queue"


def campaign_group(campaign_id) -> str:
    return f"live.campaign.{campaign_id}"


def organization_group(organization_id) -> str:
    return f"live.org.{organization_id}"


def envelope(kind: str, data: dict) -> dict:
    return {
        "type": kind,
        "version": VERSION,
        "id": uuid.uuid4().hex,
        "sent_at": timezone.now().isoformat(),
        "data": data,
    }


# --- campaign.progress -------------------------------------------------------------------------


def _counters(campaign_ids: list) -> dict:
    """Every counter of these campaigns in one indexed query: {campaign id: {metric: value}}."""
    totals: dict = {pk: {} for pk in campaign_ids}
    rows = CampaignCounter.objects.filter(campaign_id__in=campaign_ids, metric__startswith="recipients.").values_list(
        "campaign_id", "metric", "value"
    )
    for campaign_id, metric, value in rows:
        totals[campaign_id][metric] = totals[campaign_id].get(metric, 0) + value
    return totals


def _now() -> float:
    return time.time()


def _samples_key(campaign_id) -> str:
    return rkey("live", "rate", str(campaign_id))


def _rates(campaigns: list[Campaign], figures: dict, *, record: bool) -> dict:
    """{campaign id: (sent per minute, current phase's items per second)} over the sliding window,
    from samples (time, sent, phase items done) in Redis. The publisher records a sample each time
    it publishes; a GET only reads."""
    if not campaigns:
        return {}
    now = _now()
    window = settings.LIVE_RATE_WINDOW_SECONDS
    try:
        r = get_redis()
        pipe = r.pipeline(transaction=False)
        for campaign in campaigns:
            key = _samples_key(campaign.pk)
            if record:
                sent, done = figures[campaign.pk]
                pipe.zremrangebyscore(key, "-inf", now - window)
                pipe.zadd(key, {f"{now:.3f}:{sent}:{done}:{campaign.phase or ''}": now})
                pipe.expire(key, window * 2)
            pipe.zrangebyscore(key, now - window, "+inf")
        replies = pipe.execute()
    except redis.RedisError:
        return {}
    windows = replies[3::4] if record else replies
    rates = {}
    for campaign, samples in zip(campaigns, windows, strict=True):
        rates[campaign.pk] = (0.0, 0.0)
        if not samples or campaign.status != CampaignStatus.RUNNING:
            continue
        sent, done = figures[campaign.pk]
        # From the oldest sample of the current phase: a window reaching back into the phase
        # before would count its time, and no mail was sent then.
        same = next((p for p in (sample.split(":", 3) for sample in samples) if p[3] == (campaign.phase or "")), None)
        per_minute = per_second = 0.0
        if same is not None and now - float(same[0]) >= 1:
            elapsed = now - float(same[0])
            per_minute = max(sent - int(same[1]), 0) * 60 / elapsed
            per_second = max(done - int(same[2]), 0) / elapsed
        rates[campaign.pk] = (round(per_minute, 1), round(per_second, 2))
    return rates


def _phase_figures(campaign: Campaign) -> dict:
    phases = {row.phase: row for row in campaign.phases.all()}

    def get(phase: str, name: str) -> int:
        row = phases.get(phase)
        return getattr(row, name) if row is not None else 0

    return {"rows": phases, "get": get}


def progress_messages(campaigns: list[Campaign], *, record: bool = False) -> list[dict]:
    """The campaign.progress message of each campaign (phases prefetched)."""
    counters = _counters([campaign.pk for campaign in campaigns])
    figures, facts = {}, {}
    for campaign in campaigns:
        phase = _phase_figures(campaign)
        current = phase["rows"].get(campaign.phase)
        done = (current.items_done + current.items_failed) if current is not None else 0
        sent = counters[campaign.pk].get("recipients.sent", 0)
        figures[campaign.pk] = (sent, done)
        facts[campaign.pk] = (phase, current, done)
    rates = _rates(campaigns, figures, record=record)
    messages = []
    for campaign in campaigns:
        phase, current, done = facts[campaign.pk]
        get = phase["get"]
        c = counters[campaign.pk]
        outreach_total = get(Phase.OUTREACH, "items_total")
        failed = c.get("recipients.failed", 0) + c.get("recipients.bounced", 0)
        recipients = {
            "total": outreach_total,
            "sent": c.get("recipients.sent", 0),
            "failed": failed,
            # Not yet finished by outreach (pending, or being handed over): from the phase row.
            "pending": max(outreach_total - get(Phase.OUTREACH, "items_done") - get(Phase.OUTREACH, "items_failed"), 0),
        }
        per_minute, per_second = rates.get(campaign.pk, (0.0, 0.0))
        remaining = max(current.items_total - done, 0) if current is not None and current.items_total else None
        eta = round(remaining / per_second) if remaining is not None and per_second > 0 else None
        progress = campaign_progress(campaign=campaign)
        data = {
            "campaign": str(campaign.pk),
            "organization": campaign.organization.slug,
            "name": campaign.name,
            "status": campaign.status,
            "pause_cause": campaign.pause_cause or None,
            "pause": pause_fields(campaign),
            "phase": campaign.phase or None,
            "phase_progress": progress["phase"],
            "progress": progress["overall"],
            "counts": {
                "leads": get(Phase.LEAD_SOURCING, "items_done"),
                "verified": get(Phase.VERIFICATION, "items_passed"),
                "enriched": get(Phase.ENRICHMENT, "items_passed"),
                "sent": get(Phase.OUTREACH, "items_passed"),
                "recipients": recipients,
            },
            "send_rate_per_minute": per_minute,
            "phase_rate_per_second": per_second,
            "eta_seconds": eta,
            "status_message": campaign.status_message,
            "updated_at": campaign.updated_at.isoformat(),
        }
        messages.append(envelope(CAMPAIGN_PROGRESS, data))
    return messages


def _with_phases(queryset):
    return queryset.select_related("organization").prefetch_related(
        Prefetch("phases", queryset=CampaignPhase.objects.order_by("started_at", "id"))
    )


def campaign_progress_message(*, campaign: Campaign) -> dict:
    """The same message the WebSocket sends, for clients that poll."""
    campaign = _with_phases(Campaign.objects.filter(pk=campaign.pk)).get()
    return progress_messages([campaign])[0]


def campaigns_progress_messages(queryset, *, limit: int) -> list[dict]:
    return progress_messages(list(_with_phases(queryset)[:limit]))


# --- queue.state -------------------------------------------------------------------------------


def queue_state_message() -> dict:
    """The queue latch and every breaker: the platform's facts, the same for every member (the
    per-organization job counts are on GET /api/v1/queue-management/status)."""
    status = queue_status(organization_ids=[])
    data = {
        key: status[key]
        for key in (
            "state",
            "reason",
            "cause_kind",
            "cause_service",
            "changed_by",
            "gate_open",
            "can_resume",
            "open_breakers",
        )
    }
    data["changed_at"] = status["changed_at"].isoformat()
    data["breakers"] = [
        {**breaker, "opened_at": breaker["opened_at"].isoformat() if breaker["opened_at"] else None}
        for breaker in status["breakers"]
    ]
    return envelope(QUEUE_STATE, data)


# --- the publisher -----------------------------------------------------------------------------


def _take_dirty(limit: int) -> tuple[list[str], bool]:
    r = get_redis()
    pipe = r.pipeline(transaction=False)
    pipe.spop(dirty_campaigns_key(), limit)
    pipe.getdel(dirty_queue_key())
    # Every LIVE_REFRESH_SECONDS, running campaigns are published whether marked or not.
    pipe.set(rkey("live", "refresh"), "1", nx=True, ex=settings.LIVE_REFRESH_SECONDS)
    ids, queue, refresh = pipe.execute()
    ids = list(ids or [])
    if refresh:
        ids += [str(pk) for pk in Campaign.objects.filter(status=CampaignStatus.RUNNING).values_list("pk", flat=True)]
    return list(dict.fromkeys(ids))[: limit * 2], bool(queue)


def live_publish() -> dict[str, int]:
    """One tick: a campaign.progress per changed campaign to its campaign group, its
    organization's group and the platform's, and queue.state when the queue changed."""
    try:
        ids, queue = _take_dirty(settings.LIVE_PUBLISH_BATCH)
    except redis.RedisError:
        logger.warning("Live publish skipped: Redis cannot be read", exc_info=True)
        return {"campaigns": 0, "queue": 0, "messages": 0}
    sends: list[tuple[str, dict]] = []
    campaigns = list(_with_phases(Campaign.objects.alive().filter(pk__in=ids))) if ids else []
    for message in progress_messages(campaigns, record=True) if campaigns else []:
        campaign = next(c for c in campaigns if str(c.pk) == message["data"]["campaign"])
        for group in (campaign_group(campaign.pk), organization_group(campaign.organization_id), PLATFORM_GROUP):
            sends.append(
                (group, {"type": "live.message", "message": message, "organization": campaign.organization_id})
            )
    if queue:
        sends.append((QUEUE_GROUP, {"type": "live.message", "message": queue_state_message(), "organization": None}))
    if sends:
        async_to_sync(_send_all)(sends)
    return {"campaigns": len(campaigns), "queue": int(queue), "messages": len(sends)}


async def _send_all(sends: list[tuple[str, dict]]) -> None:
    """All of a tick's sends at once: each group_send is several Redis round trips, and in
    sequence they were most of a tick (benchmarks/live.py)."""
    layer = get_channel_layer()
    for start in range(0, len(sends), 200):
        await asyncio.gather(*(layer.group_send(group, event) for group, event in sends[start : start + 200]))
