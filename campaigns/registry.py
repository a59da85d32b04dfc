"""Plug-in points of the pipeline, so apps above campaigns (tracking) add work without a cycle.

- A job handler runs one claimed Job and returns its result dict. It raises `RetryableJobError`
  for a transient failure (the runner retries with backoff up to JOB_MAX_ATTEMPTS) and
  `PermanentJobError` to fail that job only. Provider errors (integrations.errors) and
  queue_control.errors.QueuePaused propagate and are handled by the runner.
- An outreach launcher prepares the outreach phase of a campaign for one channel: it creates
  the phase's jobs (and whatever rows they work on) inside the caller's transaction and returns
  the ids of the jobs it created.
"""

from collections.abc import Callable

JobHandler = Callable[..., dict]
OutreachLauncher = Callable[..., list[int]]

JOB_HANDLERS: dict[str, JobHandler] = {}
OUTREACH_LAUNCHERS: dict[str, OutreachLauncher] = {}


class RetryableJobError(Exception):
    pass


class PermanentJobError(Exception):
    pass


def job_handler(job_type: str) -> Callable[[JobHandler], JobHandler]:
    def register(fn: JobHandler) -> JobHandler:
        JOB_HANDLERS[job_type] = fn
        return fn

    return register


def outreach_launcher(channel: str) -> Callable[[OutreachLauncher], OutreachLauncher]:
    def register(fn: OutreachLauncher) -> OutreachLauncher:
        OUTREACH_LAUNCHERS[channel] = fn
        return fn

    return register
