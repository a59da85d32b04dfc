"""The sweeper: nothing stays stranded without a human.

Run by beat on the housekeeping queue every ENGINE_SWEEP_SECONDS, it repairs what lost messages
and lost workers leave behind, each step set-based or bounded by what it finds (normally nothing):

0. an open service breaker while the queue latch is active (the pause after the trip failed on
   the database) pauses the queue now: an open breaker always means a paused queue;
1. jobs stuck in processing (no heartbeat for JOB_STUCK_AFTER_SECONDS: the worker was killed, or
   lost the database) are taken back: what they claimed is recovered, then they go back to
   pending or fail after their last attempt (jobs.jobs_reap_stuck);
2. a running campaign whose current phase has every job final is moved on (its last outcome's
   worker was lost before the phase change, or its outreach waits for an operator's decision);
3. a paused job of a running campaign while the queue is active (a worker paused it for a pause
   that an operator has resumed since, or for a gate that read a stale mirror) goes back to
   pending: "any job paused, its campaign paused" holds, and a resumed campaign's job never sleeps;
4. pending work nobody has touched for ENGINE_STRANDED_AFTER_SECONDS in a running campaign with
   no running job on that queue has lost its wake-ups (a broker restarted without persistence, a
   worker killed mid-dispatch, a message consumed by a failed task): it is woken again.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from campaigns_project.redis import get_redis, rkey
from queue_control.models import QueueState
from queue_control.services import queue_pause_for_open_breakers

from .dispatch import campaigns_kick, wake
from .jobs import jobs_reap_stuck
from .models import Campaign, Job
from .pipeline import pipeline_advance, pipeline_stalled_campaign_ids
from .states import QUEUE_JOB_TYPES, CampaignStatus, JobStatus

logger = logging.getLogger(__name__)


def engine_sweep() -> dict[str, int]:
    # First: an open breaker beside an active latch is a pause that was lost; finish it before
    # step 3 would wake the jobs the gate keeps refusing.
    queue_pause_for_open_breakers()
    reaped = jobs_reap_stuck()
    stalled = pipeline_stalled_campaign_ids()
    for campaign_id in stalled:  # one locked transaction per campaign; normally there are none
        pipeline_advance(campaign_id=campaign_id)
    if not QueueState.get().is_active:
        return {**reaped, "advanced": len(stalled), "unpaused": 0, "woken": 0}
    unpaused = jobs_unpause_orphans()
    woken = campaigns_wake_stranded()
    return {**reaped, "advanced": len(stalled), "unpaused": unpaused, "woken": woken}


def jobs_unpause_orphans() -> int:
    running = Campaign.objects.filter(pk=OuterRef("campaign_id"), status=CampaignStatus.RUNNING)
    orphans = Job.objects.active().filter(status=JobStatus.PAUSED).filter(Exists(running))
    campaign_ids = set(orphans.values_list("campaign_id", flat=True))
    if not campaign_ids:
        return 0
    moved = orphans.update(status=JobStatus.PENDING, updated_at=timezone.now())
    logger.warning("%s paused job(s) of running campaigns put back to pending", moved)
    campaigns_kick(campaign_ids)
    return moved


def campaigns_wake_stranded() -> int:
    """Wake-ups for running campaigns whose claimable work nobody has touched lately. A campaign
    is woken at most once per two stranding periods (a Redis key), so a long backlog in the broker
    does not make the sweeper pile up wake-ups behind it."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.ENGINE_STRANDED_AFTER_SECONDS)
    due = Q(run_after__isnull=True) | Q(run_after__lte=now)
    woken = 0
    for kind, job_types in QUEUE_JOB_TYPES.items():
        mine = Job.objects.active().filter(campaign_id=OuterRef("pk"), job_type__in=job_types)
        stale = mine.filter(due, status=JobStatus.PENDING, updated_at__lt=cutoff)
        running = mine.filter(status=JobStatus.PROCESSING)
        stranded = (
            Campaign.objects.filter(status=CampaignStatus.RUNNING)
            .filter(Exists(stale))
            .exclude(Exists(running))
            .values_list("pk", flat=True)
        )
        for campaign_id in stranded:
            if _first_wake_in_a_while(campaign_id, kind):
                wake(campaign_id, kind, count=settings.ENGINE_CAMPAIGN_PARALLELISM)
                woken += 1
    if woken:
        logger.warning("Woke %s stranded campaign queue(s)", woken)
    return woken


def _first_wake_in_a_while(campaign_id, kind: str) -> bool:
    try:
        key = rkey("engine", "woken", str(campaign_id), kind)
        return bool(get_redis().set(key, "1", nx=True, ex=2 * settings.ENGINE_STRANDED_AFTER_SECONDS))
    except Exception:  # Redis down: waking costs little, and the wake-ups themselves need Redis
        return True
