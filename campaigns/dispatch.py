"""Waking workers: the one module of the campaigns app that sends Celery messages.

A Job row is the durable unit of work and a message only a wake-up: `work(campaign, queue)` asks a
worker to claim the next pending job of that campaign on that queue, run it, and pass the wake-up
on if more is pending. So a campaign has at most ENGINE_CAMPAIGN_PARALLELISM wake-ups in flight
per queue whatever its size, a lost or duplicated message never loses or doubles work (the claim
decides who runs a job), and a lost one is replaced by the sweeper (campaigns/sweeper.py).

Messages are sent by task name, so nothing here imports the tasks, and only after the surrounding
transaction commits (a worker must find the rows the message is about). A broker that cannot be
reached is logged, not raised: the database already holds the work, and the sweeper wakes it.
"""

import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

from campaigns_project.celery import app

logger = logging.getLogger(__name__)

WORK_TASK = "campaigns.tasks.work"
KICK_TASK = "campaigns.tasks.kick_campaign"
# A publish to a broker that is down gives up quickly: the sweeper sends the wake-up again later.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def queue_name(kind: str) -> str:
    return settings.CELERY_QUEUE_NAMES[kind]


def _send(task: str, args: tuple, *, kind: str, countdown: float | None = None) -> None:
    try:
        app.send_task(
            task, args=args, queue=queue_name(kind), countdown=countdown, retry=True, retry_policy=PUBLISH_RETRY
        )
    except Exception:
        logger.warning("Could not send %s%s; the sweeper will wake the work", task, args, exc_info=True)


def wake(campaign_id, kind: str, *, count: int = 1, countdown: float | None = None) -> None:
    """After commit: `count` wake-ups (at most the campaign's parallelism) for the campaign's
    pending jobs on queue `kind` ("pipeline" or "send")."""
    count = min(count, settings.ENGINE_CAMPAIGN_PARALLELISM)
    if count < 1:
        return
    args = (str(campaign_id), kind)

    def send() -> None:
        for _ in range(count):
            _send(WORK_TASK, args, kind=kind, countdown=countdown)

    transaction.on_commit(send)


def campaigns_kick(campaign_ids: Iterable) -> None:
    """After commit, one kick_campaign message per campaign, which wakes whatever work the
    campaign has pending (used on resume, where a thousand campaigns must not mean a thousand
    queries inside the operator's request)."""
    ids = [str(campaign_id) for campaign_id in campaign_ids]
    if not ids:
        return

    def send() -> None:
        for campaign_id in ids:
            _send(KICK_TASK, (campaign_id,), kind="pipeline")

    transaction.on_commit(send)
