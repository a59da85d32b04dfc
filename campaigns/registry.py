"""Plug-in points of the pipeline, so apps above campaigns (tracking) add work without a cycle.

- A job handler runs one claimed Job and returns its result dict. It raises `RetryableJobError`
  for a transient failure (the runner retries with backoff up to JOB_MAX_ATTEMPTS) and
  `PermanentJobError` to fail that job only. Provider errors (integrations.errors) and
  queue_control.errors.QueuePaused propagate and are handled by the runner.
- An outreach launcher prepares the outreach phase of a campaign for one channel: inside the
  caller's transaction it creates the phase's jobs (and whatever rows they work on) and adds them
  to the phase's counters (pipeline.phase_work_add).
- An outreach settler is asked, once every outreach job of a campaign is final, whether the
  channel's work is done (and how it went), needs more jobs (it adds them), or waits for an
  operator.
- A job recoverer takes back what a job whose worker was lost had claimed (the send job's
  recipients), before the job is run again or failed.
"""

from collections.abc import Callable
from dataclasses import dataclass

JobHandler = Callable[..., dict]
OutreachLauncher = Callable[..., None]


@dataclass(frozen=True)
class OutreachOutcome:
    state: str  # DONE, MORE, WAITING or FAILED
    message: str = ""

    DONE = "done"  # the campaign completes, `message` says how outreach went
    MORE = "more"  # the settler created more jobs: the phase goes on
    WAITING = "waiting"  # an operator must decide something first; `message` says what
    FAILED = "failed"  # nothing could be sent; `message` says why


OutreachSettler = Callable[..., OutreachOutcome]
JobRecoverer = Callable[..., str]

JOB_HANDLERS: dict[str, JobHandler] = {}
OUTREACH_LAUNCHERS: dict[str, OutreachLauncher] = {}
OUTREACH_SETTLERS: dict[str, OutreachSettler] = {}
JOB_RECOVERERS: dict[str, JobRecoverer] = {}


class RetryableJobError(Exception):
    """A passing failure; `retry_after` (seconds) is what the provider asked us to wait, if it did."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJobError(Exception):
    pass


def _registrar(table: dict, name: str) -> Callable:
    def register(fn):
        table[name] = fn
        return fn

    return register


def job_handler(job_type: str) -> Callable[[JobHandler], JobHandler]:
    return _registrar(JOB_HANDLERS, job_type)


def outreach_launcher(channel: str) -> Callable[[OutreachLauncher], OutreachLauncher]:
    return _registrar(OUTREACH_LAUNCHERS, channel)


def outreach_settler(channel: str) -> Callable[[OutreachSettler], OutreachSettler]:
    return _registrar(OUTREACH_SETTLERS, channel)


def job_recoverer(job_type: str) -> Callable[[JobRecoverer], JobRecoverer]:
    return _registrar(JOB_RECOVERERS, job_type)
