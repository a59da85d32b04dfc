"""The pipeline's job handlers and the Instantly channel's launcher and settler.

A handler gets a claimed Job (campaign loaded) and returns its result dict; the runner
(runner.job_run) records the outcome. Every provider call goes through the guard (the queue latch,
the service's breaker and its shared rate limit, right before the call). Handlers are idempotent:
a rerun (retry, continuation, a job taken back from a lost worker) skips what an earlier run
already stored, so a paid call is not repeated.

Verification and enrichment work on a batch of leads (the job's lead-id range) with the batch's
calls running concurrently (campaigns/batches.py), and store results set-based, one UPDATE per
chunk of results, with the phase's counters in the same transaction.
"""

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from time import monotonic

from django.conf import settings
from django.db import transaction
from django.db.models import Case, JSONField, Value, When
from django.utils import timezone

from integrations.apollo import MAX_PER_PAGE, parse_search_url
from integrations.errors import ProviderError, RateLimitedError
from integrations.instantly import COUNTS, MAX_LEADS_PER_CALL
from integrations.millionverifier import email_status_for
from integrations.providers import get_enricher, get_provider
from integrations.ratelimit import provider_bucket
from integrations.sandbox import cache_only_in_this_thread, sandbox_controls_refresh
from queue_control.guard import guarded_call

from .batches import BatchRun
from .jobs import Heartbeat, JobDeferred, JobIncomplete, JobStopped, job_checkpoint
from .models import Campaign, CampaignPhase, InstantlyAnalytics, Job, Lead
from .pipeline import SENDABLE_EMAIL_STATUSES, fan_out, phase_items_add, phase_work_add
from .registry import (
    OutreachOutcome,
    PermanentJobError,
    RetryableJobError,
)
from .states import JobStatus, JobType, Phase

LEAD_BATCH_SIZE = 1000
LEAD_FIELDS = ("first_name", "last_name", "title", "company", "company_domain", "linkedin_url", "phone")
# Leads one Instantly push job covers (it pushes them MAX_LEADS_PER_CALL at a time).
INSTANTLY_JOB_LEADS = 10_000


def call_with_heartbeat(job: Job, fn, *args, **kwargs):
    """Run one blocking provider call in a helper thread while this thread keeps the job's
    heartbeat going, so a slow call (timeouts and retries can add up to minutes) is not taken for
    a lost worker. Runs inside guarded_call, which counts the call's errors here, in this thread."""
    heartbeat = Heartbeat(job)
    sandbox_controls_refresh()
    with ThreadPoolExecutor(1, "provider-call", initializer=cache_only_in_this_thread) as pool:
        future = pool.submit(fn, *args, **kwargs)
        while True:
            try:
                return future.result(timeout=settings.ENGINE_HEARTBEAT_SECONDS / 2)
            except FutureTimeout:
                heartbeat.beat()


def _retry_or_give_up(job: Job, phase: str, retry: dict, what: str) -> None:
    """Items a batch could not do for a passing reason: the job runs again later for them, or,
    on its last attempt, counts them as failed and fails naming the last error."""
    if not retry:
        return
    last_error = next(reversed(retry.values()))
    summary = f"{len(retry)} of {job.size} leads could not be {what}: {type(last_error).__name__}: {last_error}"
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        phase_items_add(campaign_id=job.campaign_id, phase=phase, failed=len(retry))
        raise PermanentJobError(summary)
    retry_after = max((exc.retry_after or 0 for exc in retry.values() if isinstance(exc, RateLimitedError)), default=0)
    raise RetryableJobError(summary, retry_after)


def _range(job: Job):
    return Lead.objects.filter(campaign_id=job.campaign_id, pk__gte=job.range_start, pk__lte=job.range_end)


# --- lead sourcing -----------------------------------------------------------------------------


def fetch_leads(*, job: Job) -> dict:
    """Page through the Apollo search until the campaign has lead_count leads (deduped by email),
    or take the leads a CSV upload already stored. Checkpoints the next page after each one, so a
    retry or a continuation does not pay for the same page again."""
    campaign = job.campaign
    if campaign.file_name:
        leads = campaign.leads.count()
        if not job.result.get("counted"):
            phase_items_add(campaign_id=campaign.pk, phase=Phase.LEAD_SOURCING, done=leads, passed=leads)
            job_checkpoint(job, counted=True)
        return {"source": "csv", "file_name": campaign.file_name, "leads": leads, "counted": True}
    if not campaign.search_url:
        raise PermanentJobError("The campaign has neither an Apollo search URL nor an uploaded CSV file.")
    try:
        filters = parse_search_url(campaign.search_url)
    except ValueError as exc:
        raise PermanentJobError(str(exc))

    wanted = campaign.lead_count
    # One page size for the whole search, so page numbers stay consistent across reruns, and no
    # larger than needed: on the real API every returned person costs an email-reveal credit.
    per_page = min(MAX_PER_PAGE, wanted)
    page = int(job.result.get("next_page", 1))
    stored = campaign.leads.count()
    deadline = monotonic() + settings.ENGINE_TASK_BUDGET_SECONDS
    with get_provider("apollo") as apollo:
        while stored < wanted:
            found = guarded_call(
                "apollo", call_with_heartbeat, job, apollo.fetch_leads, filters=filters, page=page, per_page=per_page
            )
            with transaction.atomic():
                new = _leads_store(campaign, found.leads, limit=wanted - stored)
                page += 1
                if not job_checkpoint(job, next_page=page, leads=stored + new, available=found.total):
                    raise JobStopped("the job is no longer this run's")  # rolls back this page's leads
                phase_items_add(campaign_id=campaign.pk, phase=Phase.LEAD_SOURCING, done=new, passed=new)
            stored += new
            if not found.has_more:
                break
            if stored < wanted and monotonic() > deadline:
                raise JobIncomplete  # at least one page per run, so every run makes progress
    return {"source": "apollo", "leads": stored, "pages": page - 1, "available": job.result.get("available", 0)}


def _leads_store(campaign: Campaign, found: list, *, limit: int) -> int:
    """Store up to `limit` new leads of one page; returns how many were new."""
    page: dict[str, Lead] = {}
    for data in found:
        email = data.email.strip().lower()
        if email and email not in page:
            page[email] = Lead(
                campaign=campaign,
                email=email,
                source="apollo",
                source_id=data.source_id,
                **{name: getattr(data, name) or "" for name in LEAD_FIELDS},
            )
    if not page:
        return 0
    known = set(campaign.leads.filter(email__in=list(page)).values_list("email", flat=True))
    new = [lead for email, lead in page.items() if email not in known][:limit]
    # ignore_conflicts: (campaign, email) is unique, so a lead stored by an earlier run is skipped.
    Lead.objects.bulk_create(new, batch_size=LEAD_BATCH_SIZE, ignore_conflicts=True)
    return len(new)


# --- verification ------------------------------------------------------------------------------


def verify_emails(*, job: Job) -> dict:
    """Verify the batch's unverified addresses (MillionVerifier charges per call: never twice per
    lead). An address the verifier refuses outright (BadRequestError) is marked invalid, so it is
    never mailed; the campaign goes on without it."""
    leads = list(_range(job).filter(email_status=Lead.EmailStatus.UNVERIFIED).values_list("pk", "email"))
    counts: dict[str, int] = dict(job.result.get("by_status", {}))

    def store(results: list, refused: list) -> None:
        by_status: dict[str, list[int]] = {}
        for (pk, _email), verdict in results:
            by_status.setdefault(email_status_for(verdict.result), []).append(pk)
        for (pk, _email), _exc in refused:
            by_status.setdefault(Lead.EmailStatus.INVALID, []).append(pk)
        with transaction.atomic():
            done = passed = 0
            for email_status, ids in sorted(by_status.items()):
                moved = Lead.objects.filter(pk__in=ids, email_status=Lead.EmailStatus.UNVERIFIED).update(
                    email_status=email_status
                )
                counts[email_status] = counts.get(email_status, 0) + moved
                done += moved
                passed += moved if email_status in SENDABLE_EMAIL_STATUSES else 0
            extra = {"last_refusal": refused[-1][1].message} if refused else {}
            if not job_checkpoint(job, by_status=counts, **extra):
                raise JobStopped("the job is no longer this run's")
            phase_items_add(campaign_id=job.campaign_id, phase=Phase.VERIFICATION, done=done, passed=passed)

    with get_provider("millionverifier") as verifier:
        retry = BatchRun(
            job=job,
            service="millionverifier",
            call=lambda lead: verifier.verify(lead[1]),
            store=store,
            concurrency=settings.PROVIDER_CONCURRENCY["millionverifier"],
            buckets=[provider_bucket("millionverifier")],
        ).run(leads)
    _retry_or_give_up(job, Phase.VERIFICATION, retry, "verified")
    return {**job.result, "by_status": counts}


# --- enrichment --------------------------------------------------------------------------------


def enrich_leads(*, job: Job) -> dict:
    """Write one personalisation line for each sendable lead of the batch not enriched yet
    (OpenAI or Perplexity, per ENRICHMENT_PROVIDER)."""
    fields = ("pk", "email", *LEAD_FIELDS)
    leads = list(
        _range(job).filter(email_status__in=SENDABLE_EMAIL_STATUSES, enriched_at__isnull=True).values_list(*fields)
    )
    enriched = int(job.result.get("enriched", 0))
    failed = int(job.result.get("refused", 0))

    with get_enricher() as enricher:

        def personalize(row: tuple) -> str:
            return enricher.personalize(dict(zip(fields[1:], row[1:], strict=True)))

        def store(results: list, refused: list) -> None:
            nonlocal enriched, failed
            with transaction.atomic():
                moved = 0
                if results:
                    values = {row[0]: {"line": line, "provider": enricher.service} for row, line in results}
                    moved = Lead.objects.filter(pk__in=list(values), enriched_at__isnull=True).update(
                        enrichment=Case(
                            *(When(pk=pk, then=Value(value, output_field=JSONField())) for pk, value in values.items()),
                            output_field=JSONField(),
                        ),
                        enriched_at=timezone.now(),
                    )
                enriched += moved
                failed += len(refused)
                extra = {"last_refusal": refused[-1][1].message} if refused else {}
                if not job_checkpoint(job, enriched=enriched, refused=failed, **extra):
                    raise JobStopped("the job is no longer this run's")
                phase_items_add(
                    campaign_id=job.campaign_id,
                    phase=Phase.ENRICHMENT,
                    done=moved,
                    passed=moved,
                    failed=len(refused),
                )

        service = enricher.service
        retry = BatchRun(
            job=job,
            service=service,
            call=personalize,
            store=store,
            concurrency=settings.PROVIDER_CONCURRENCY[service],
            buckets=[provider_bucket(service)],
        ).run(leads)
    _retry_or_give_up(job, Phase.ENRICHMENT, retry, "enriched")
    return {**job.result, "enriched": enriched, "refused": failed, "provider": service}


# --- Instantly ---------------------------------------------------------------------------------


def instantly_outreach_launch(*, campaign: Campaign) -> None:
    """The Instantly channel's outreach: one job that creates the campaign in Instantly, and one
    push job per INSTANTLY_JOB_LEADS sendable leads (they wait for the campaign to exist)."""
    Job.objects.create(campaign=campaign, job_type=JobType.PUSH_INSTANTLY)
    phase_work_add(campaign_id=campaign.pk, phase=Phase.OUTREACH, jobs=1)
    fan_out(campaign, JobType.PUSH_INSTANTLY, email_statuses=SENDABLE_EMAIL_STATUSES, batch_size=INSTANTLY_JOB_LEADS)


def push_instantly(*, job: Job) -> dict:
    """Create the campaign in Instantly (the job without a range), or add the job's range of
    sendable leads to it, MAX_LEADS_PER_CALL per call.

    The Instantly campaign id is stored as soon as it exists, so a retry adds to the same campaign
    instead of creating a second one; the last lead pushed is checkpointed, and
    skip_if_in_campaign makes a repeated chunk harmless. The campaign is left for the operator to
    review and activate in Instantly: its sequence is written there.
    """
    campaign = Campaign.objects.get(pk=job.campaign_id)
    with get_provider("instantly") as instantly:
        if job.range_start is None:
            remote_id = campaign.instantly_campaign_id
            if not remote_id:
                remote_id = guarded_call(
                    "instantly", call_with_heartbeat, job, instantly.create_campaign, name=campaign.name
                )
                Campaign.objects.filter(pk=campaign.pk).update(instantly_campaign_id=remote_id)
            return {"instantly_campaign_id": remote_id}
        if not campaign.instantly_campaign_id:
            raise JobDeferred("waiting for the campaign to be created in Instantly", delay=2)
        return _push_range(job, instantly, campaign.instantly_campaign_id)


def _push_range(job: Job, instantly, remote_id: str) -> dict:
    deadline = monotonic() + settings.ENGINE_TASK_BUDGET_SECONDS
    counts: dict[str, int] = dict(job.result.get("counts", {}))
    if job.range_start is None:  # push_instantly sends only the jobs with a range here
        raise TypeError(f"job {job.pk} has no lead range to push")
    after = int(job.result.get("after_lead_id", job.range_start - 1))
    sendable = _range(job).filter(email_status__in=SENDABLE_EMAIL_STATUSES).order_by("pk")
    while chunk := list(sendable.filter(pk__gt=after)[:MAX_LEADS_PER_CALL]):
        added = guarded_call(
            "instantly",
            call_with_heartbeat,
            job,
            instantly.add_leads,
            campaign_id=remote_id,
            leads=[_instantly_lead(lead) for lead in chunk],
        )
        for name in COUNTS:
            counts[name] = counts.get(name, 0) + getattr(added, name)
        after = chunk[-1].pk
        with transaction.atomic():
            if not job_checkpoint(job, after_lead_id=after, counts=counts):
                raise JobStopped("the job is no longer this run's")
            phase_items_add(
                campaign_id=job.campaign_id, phase=Phase.OUTREACH, done=len(chunk), passed=added.leads_uploaded
            )
        if monotonic() > deadline:
            raise JobIncomplete
    return {"instantly_campaign_id": remote_id, "counts": counts}


def _instantly_lead(lead: Lead) -> dict:
    payload = {
        "email": lead.email,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "company_name": lead.company,
        "website": lead.company_domain,
        "phone": lead.phone,
        "personalization": lead.enrichment.get("line", ""),
        "custom_variables": {"title": lead.title, "linkedin_url": lead.linkedin_url},
    }
    return {key: value for key, value in payload.items() if value}


def instantly_outreach_settle(*, campaign: Campaign) -> OutreachOutcome:
    """Every push job is final: say what Instantly took, from the phase's counters."""
    phase = CampaignPhase.objects.filter(campaign=campaign, phase=Phase.OUTREACH).first()
    pushed = phase.items_passed if phase else 0
    offered = phase.items_done if phase else 0
    failed = Job.objects.filter(campaign=campaign, job_type=JobType.PUSH_INSTANTLY, status=JobStatus.FAILED).count()
    if failed and not pushed:
        error = (
            Job.objects.filter(campaign=campaign, job_type=JobType.PUSH_INSTANTLY, status=JobStatus.FAILED)
            .values_list("last_error", flat=True)
            .last()
        )
        return OutreachOutcome(OutreachOutcome.FAILED, f"Nothing was pushed to Instantly: {error}")
    message = f"{pushed} of {offered} leads pushed to Instantly"
    if offered - pushed:
        message += f" ({offered - pushed} skipped by Instantly: duplicates, blocklist or invalid)"
    if failed:
        message += f"; {failed} push job{'s' if failed != 1 else ''} failed"
    return OutreachOutcome(OutreachOutcome.DONE, message)


def instantly_analytics_sync(*, campaign: Campaign) -> None:
    """Read Instantly's current figures for a campaign through the breaker and store them (or why
    they could not be read) in its InstantlyAnalytics row. The periodic sync is the only caller.
    Raises QueuePaused (the queue is paused or a breaker opened): nothing is stored then."""
    now = timezone.now()
    try:
        with get_provider("instantly") as instantly:
            figures = guarded_call(
                "instantly", instantly.campaign_analytics, campaign_id=campaign.instantly_campaign_id
            )
    except ProviderError as exc:
        InstantlyAnalytics.objects.update_or_create(
            campaign=campaign, defaults={"error": f"{exc.__class__.__name__}: {exc}", "attempted_at": now}
        )
        raise
    InstantlyAnalytics.objects.update_or_create(
        campaign=campaign, defaults={"figures": figures, "synced_at": now, "error": "", "attempted_at": now}
    )
