"""A Celery task that does nothing but count itself: the broker's and the workers' own rate, which
benchmarks/pipeline.py measures beside the pipeline. Workers load it only when told to
(CELERY_EXTRA_IMPORTS=benchmarks.noop); the product never does."""

from celery import shared_task

from campaigns_project.redis import get_redis, rkey


@shared_task(name="benchmarks.noop")
def noop() -> None:
    get_redis().incr(rkey("bench", "noop"))
