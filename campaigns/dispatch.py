"""Waking workers up. The Job row is the durable unit of work; a Celery message is only a wake-up,
so a lost or duplicated message never loses or doubles work (the claim decides who runs a job)."""

from collections.abc import Iterable

from django.db import transaction


def jobs_enqueue(job_ids: Iterable[int]) -> None:
    """Send one run_job message per job, after the surrounding transaction commits."""
    ids = list(job_ids)
    if not ids:
        return

    def send() -> None:
        from .tasks import run_job

        for job_id in ids:  # one message per job is the point: each is a separate unit of work
            run_job.delay(job_id)

    transaction.on_commit(send)


def campaigns_kick(campaign_ids: Iterable) -> None:
    """After commit, ask a worker to enqueue every pending job of each campaign (used on resume,
    where a million jobs must not mean a million messages inside the operator's request)."""
    ids = [str(campaign_id) for campaign_id in campaign_ids]
    if not ids:
        return

    def send() -> None:
        from .tasks import dispatch_campaign

        for campaign_id in ids:
            dispatch_campaign.delay(campaign_id)

    transaction.on_commit(send)
