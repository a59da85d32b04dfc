"""Plug-in points of the pipeline, so apps above campaigns (tracking) add work without a cycle.

Each app registers its plug-ins by name in its AppConfig.ready() (`register(...)` below), and the
system check campaigns.checks refuses to run without a handler for every job type and a launcher
and a settler for every channel.

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
from typing import TypeVar

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

_Plugin = TypeVar("_Plugin", bound=Callable[..., object])


class RetryableJobError(Exception):
    """A passing failure; `retry_after` (seconds) is what the provider asked us to wait, if it did."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJobError(Exception):
    pass


def register(
    *,
    job_handlers: dict[str, JobHandler] | None = None,
    outreach_launchers: dict[str, OutreachLauncher] | None = None,
    outreach_settlers: dict[str, OutreachSettler] | None = None,
    job_recoverers: dict[str, JobRecoverer] | None = None,
) -> None:
    """Register plug-ins by job type or channel name (from an AppConfig.ready()). A name registered
    twice is a programming error, refused."""
    _register_into(JOB_HANDLERS, job_handlers)
    _register_into(OUTREACH_LAUNCHERS, outreach_launchers)
    _register_into(OUTREACH_SETTLERS, outreach_settlers)
    _register_into(JOB_RECOVERERS, job_recoverers)


def _register_into(table: dict[str, _Plugin], entries: dict[str, _Plugin] | None) -> None:
    for name, fn in (entries or {}).items():
        if table.get(name, fn) is not fn:
            raise ValueError(f"{name!r} is registered twice: {table[name]!r} and {fn!r}")
        table[name] = fn
