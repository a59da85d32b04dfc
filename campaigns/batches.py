"""Running one provider call per item of a batch, several at once.

Provider calls are network I/O: a worker that makes them one after the other runs at
1 / latency calls a second whatever the provider allows. Here up to `concurrency` calls of a
batch are in flight at once, in threads that do nothing but the call. Everything else stays in
the job's own thread, which coordinates:

- right before it starts each call, it asks queue_control.guard.call_permit (one Redis round
  trip: the queue latch, the service's breaker, a token of the service's shared rate limit), so no
  call starts once a pause is in Redis, and all workers together stay within the provider's limit;
- every CONTROL_SECONDS it reads the job and its campaign (an operator's pause or a cancel stops
  the batch between calls), refreshes the sandbox switches and beats the job's heartbeat;
- it counts failures against the breaker, and hands results to the caller's `store` at least
  every ENGINE_FLUSH_SECONDS or ENGINE_FLUSH_ITEMS, which writes them set-based; a rerun of the
  job then skips what is stored, so a lost worker re-pays at most the calls of one flush window.

The call threads never touch the database.
"""

import logging
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from time import monotonic, sleep
from typing import Any

from django.conf import settings

from integrations.errors import BadRequestError
from integrations.ratelimit import TokenBucket
from integrations.sandbox import cache_only_in_this_thread, sandbox_controls_refresh
from queue_control.errors import QueuePaused
from queue_control.guard import call_permit, classify, failure_record

from .jobs import Heartbeat, JobDeferred, JobIncomplete, JobStopped, job_control
from .models import Job

logger = logging.getLogger(__name__)

# How often the coordinating thread reads the job's and campaign's state while calls run: a pause
# or a cancel stops new calls within this (a queue pause is seen before the very next call).
CONTROL_SECONDS = 0.25


@dataclass
class BatchOutcome:
    """What a batch run did: per item, a result or the error about that one item."""

    results: list[tuple[Any, Any]] = field(default_factory=list)  # (item, value)
    refused: list[tuple[Any, BadRequestError]] = field(default_factory=list)  # the provider refused the item
    retry: dict[Any, BaseException] = field(default_factory=dict)  # failed for a passing reason: next run


class BatchRun:
    """Calls `call(item)` for each item under the guard, `concurrency` at a time, and hands
    finished items to `store(results, refused)` in chunks; `run` returns the items to retry.

    Stops by raising what the job runner understands: QueuePaused (the gate refused a call: the
    queue was paused or the breaker opened), JobStopped (the campaign is no longer running or the
    job no longer this run's), JobDeferred (Redis cannot be reached, or the rate limit is far),
    JobIncomplete (the task's time budget is spent). Calls already in flight are waited for and
    their results stored first, so nothing paid for is lost.
    """

    def __init__(
        self,
        *,
        job: Job,
        service: str,
        call: Callable[[Any], Any],
        store: Callable[[list, list], None],
        concurrency: int,
        buckets: Iterable[TokenBucket | None] = (),
        budget: float | None = None,
    ) -> None:
        self.job = job
        self.service = service
        self.call = call
        self.store = store
        self.concurrency = max(1, concurrency)
        self.buckets = list(buckets)
        self.deadline = monotonic() + (settings.ENGINE_TASK_BUDGET_SECONDS if budget is None else budget)
        self.heartbeat = Heartbeat(job)

    def run(self, items: Iterable[Any]) -> dict[Any, BaseException]:
        pending = deque(items)
        outcome = BatchOutcome()
        in_flight: dict[Future, Any] = {}
        stop: BaseException | None = None
        next_control = 0.0
        last_store = monotonic()
        with ThreadPoolExecutor(self.concurrency, "batch-call", initializer=cache_only_in_this_thread) as pool:
            while (pending and stop is None) or in_flight:
                now = monotonic()
                if stop is None and now >= next_control:
                    stop = self._control(now)
                    next_control = now + CONTROL_SECONDS
                pause = CONTROL_SECONDS
                while stop is None and pending and len(in_flight) < self.concurrency:
                    permit = call_permit(self.service, self.buckets)
                    if permit.granted:
                        item = pending.popleft()
                        in_flight[pool.submit(self.call, item)] = item
                    elif permit.wait:
                        if permit.wait > settings.ENGINE_TASK_BUDGET_SECONDS:
                            stop = JobDeferred(
                                f"{self.service} rate limit: next call in {permit.wait:.0f}s", delay=permit.wait
                            )
                        pause = min(pause, permit.wait)
                        break
                    elif permit.unreachable:
                        stop = JobDeferred(f"Not called: {permit.refusal}.", delay=5)
                    else:
                        stop = QueuePaused(f"Not called: {permit.refusal}.", service=self.service)
                if in_flight:
                    done, _ = wait(in_flight, timeout=pause, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._collect(in_flight.pop(future), future, outcome)
                elif stop is None and pending:
                    sleep(pause)  # every call waits for a rate-limit token
                if _store_due(outcome, last_store):
                    self._store(outcome)
                    last_store = monotonic()
        self._store(outcome)
        if stop is None and outcome.retry:
            stop = self._after_failures(outcome.retry)
        if stop is not None:
            raise stop
        return outcome.retry

    def _after_failures(self, retry: dict[Any, BaseException]) -> BaseException | None:
        """Calls failed and no further call was refused: an error that tripped the breaker at once
        (credit gone) goes up as it is, and a job the cascade paused meanwhile stops as paused."""
        tripped = [exc for exc in retry.values() if classify(exc)[1]]
        if tripped:
            return tripped[-1]
        return self._state()

    def _control(self, now: float) -> BaseException | None:
        if now > self.deadline:
            return JobIncomplete("time budget spent")
        sandbox_controls_refresh()
        self.heartbeat.beat()
        return self._state()

    def _state(self) -> BaseException | None:
        """Why the batch must stop, read from its job and campaign (None: go on)."""
        reason = job_control(self.job)
        if reason is None:
            return None
        if reason == "paused":
            return QueuePaused("The job was paused.", service=self.service)
        return JobStopped(reason)

    def _collect(self, item: Any, future: Future, outcome: BatchOutcome) -> None:
        exc = future.exception()
        if exc is None:
            outcome.results.append((item, future.result()))
            return
        failure_record(self.service, exc)
        if isinstance(exc, BadRequestError):
            outcome.refused.append((item, exc))
            return
        counts, _ = classify(exc)
        if not counts:
            logger.error("%s call for %r raised an unexpected error", self.service, item, exc_info=exc)
        outcome.retry[item] = exc

    def _store(self, outcome: BatchOutcome) -> None:
        """Hand the finished items to the caller's store (which also moves the heartbeat)."""
        if outcome.results or outcome.refused:
            self.store(outcome.results, outcome.refused)
            outcome.results, outcome.refused = [], []
            self.heartbeat.last = monotonic()  # the store moved updated_at


def _store_due(outcome: BatchOutcome, last_store: float) -> bool:
    finished = len(outcome.results) + len(outcome.refused)
    return bool(finished) and (
        finished >= settings.ENGINE_FLUSH_ITEMS or monotonic() - last_store >= settings.ENGINE_FLUSH_SECONDS
    )
