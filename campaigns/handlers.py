"""The pipeline's job handlers and the Instantly outreach launcher.

A handler gets a claimed Job (campaign and lead loaded) and returns its result dict; the runner
(jobs.job_run) records the outcome. Every provider call goes through guarded_call, which checks
the queue latch and the service's breaker right before the call. Handlers are idempotent: a rerun
(retry, reaped job) skips what an earlier run already stored, so a paid call is not repeated.
"""

from time import monotonic

from django.db import transaction
from django.utils import timezone

from integrations.apollo import MAX_PER_PAGE, parse_search_url
from integrations.errors import BadRequestError
from integrations.instantly import MAX_LEADS_PER_CALL
from integrations.millionverifier import email_status_for
from integrations.providers import get_enricher, get_provider
from queue_control.guard import guarded_call

from .jobs import JobIncomplete, job_checkpoint, job_time_budget
from .models import Campaign, Job, Lead
from .pipeline import SENDABLE_EMAIL_STATUSES
from .registry import PermanentJobError, job_handler, outreach_launcher
from .states import JobStatus, JobType, Phase

LEAD_BATCH_SIZE = 1000
LEAD_FIELDS = ("first_name", "last_name", "title", "company", "company_domain", "linkedin_url", "phone")


# --- lead sourcing -----------------------------------------------------------------------------


@job_handler(JobType.FETCH_LEADS)
def fetch_leads(*, job: Job) -> dict:
    """Page through the Apollo search until the campaign has lead_count leads (deduped by email),
    or take the leads a CSV upload already stored. Checkpoints the next page after each one, so a
    retry or a continuation does not pay for the same page again."""
    campaign = job.campaign
    if campaign.file_name:
        return {"source": "csv", "file_name": campaign.file_name, "leads": campaign.leads.count()}
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
    deadline = monotonic() + job_time_budget()
    with get_provider("apollo") as apollo:
        while stored < wanted:
            found = guarded_call("apollo", apollo.fetch_leads, filters=filters, page=page, per_page=per_page)
            stored += _leads_store(campaign, found.leads, limit=wanted - stored)
            page += 1
            job_checkpoint(job, next_page=page, leads=stored, available=found.total)
            Campaign.objects.filter(pk=campaign.pk, phase=Phase.LEAD_SOURCING).update(
                progress=min(100, stored * 100 // wanted)
            )
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


# --- verification and enrichment ---------------------------------------------------------------


@job_handler(JobType.VERIFY_EMAIL)
def verify_email(*, job: Job) -> dict:
    """Verify one lead's address (MillionVerifier charges per call: never twice per lead).

    An address the verifier refuses outright (BadRequestError) is marked invalid, so it is never
    mailed, and the job fails with the verifier's words; the campaign goes on without that lead.
    """
    lead = job.lead
    if lead.email_status != Lead.EmailStatus.UNVERIFIED:
        return {"email_status": lead.email_status, "skipped": "already verified"}
    with get_provider("millionverifier") as verifier:
        try:
            verdict = guarded_call("millionverifier", verifier.verify, lead.email)
        except BadRequestError as exc:
            Lead.objects.filter(pk=lead.pk).update(email_status=Lead.EmailStatus.INVALID)
            raise PermanentJobError(f"The verifier refused {lead.email}: {exc.message}")
    email_status = email_status_for(verdict.result)
    Lead.objects.filter(pk=lead.pk).update(email_status=email_status)
    return {"result": verdict.result, "subresult": verdict.subresult, "email_status": email_status}


@job_handler(JobType.ENRICH_LEAD)
def enrich_lead(*, job: Job) -> dict:
    """Write one personalisation line for a lead (OpenAI or Perplexity, per ENRICHMENT_PROVIDER)."""
    lead = job.lead
    if lead.enriched_at is not None:
        return {"skipped": "already enriched", "provider": lead.enrichment.get("provider", "")}
    facts = {"email": lead.email, **{name: getattr(lead, name) for name in LEAD_FIELDS}}
    with get_enricher() as enricher:
        line = guarded_call(enricher.service, enricher.personalize, facts)
    enrichment = {"line": line, "provider": enricher.service}
    Lead.objects.filter(pk=lead.pk).update(enrichment=enrichment, enriched_at=timezone.now())
    return enrichment


# --- Instantly ---------------------------------------------------------------------------------


@outreach_launcher("instantly")
def instantly_outreach_launch(*, campaign: Campaign) -> list[int]:
    """The Instantly channel's outreach is one push_instantly job."""
    return [Job.objects.create(campaign=campaign, job_type=JobType.PUSH_INSTANTLY).pk]


@job_handler(JobType.PUSH_INSTANTLY)
def push_instantly(*, job: Job) -> dict:
    """Create the campaign in Instantly (once) and add the sendable leads to it, a chunk per call.

    The Instantly campaign id is stored as soon as it exists, so a retry adds to the same campaign
    instead of creating a second one; the last lead pushed is checkpointed, and
    skip_if_in_campaign makes a repeated chunk harmless. The campaign is left for the operator to
    review and activate in Instantly: its sequence is written there.
    """
    campaign = job.campaign
    deadline = monotonic() + job_time_budget()
    counts: dict[str, int] = job.result.get("counts", {})
    after = int(job.result.get("after_lead_id", 0))
    sendable = campaign.leads.filter(email_status__in=SENDABLE_EMAIL_STATUSES).order_by("pk")
    with get_provider("instantly") as instantly:
        remote_id = campaign.instantly_campaign_id
        if not remote_id:
            remote_id = guarded_call("instantly", instantly.create_campaign, name=campaign.name)
            Campaign.objects.filter(pk=campaign.pk).update(instantly_campaign_id=remote_id)
        while chunk := list(sendable.filter(pk__gt=after)[:MAX_LEADS_PER_CALL]):
            added = guarded_call(
                "instantly", instantly.add_leads, campaign_id=remote_id, leads=[_instantly_lead(lead) for lead in chunk]
            )
            for name in ("leads_uploaded", "in_blocklist", "duplicated_leads", "skipped_count", "invalid_email_count"):
                counts[name] = counts.get(name, 0) + getattr(added, name)
            after = chunk[-1].pk
            job_checkpoint(job, after_lead_id=after, counts=counts)
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


def instantly_analytics_fetch(*, campaign: Campaign) -> dict:
    """Instantly's current figures for a campaign (raises ProviderError or QueuePaused)."""
    with get_provider("instantly") as instantly:
        return guarded_call("instantly", instantly.campaign_analytics, campaign_id=campaign.instantly_campaign_id)


def instantly_analytics_store(*, campaign: Campaign, analytics: dict) -> Job:
    """Keep the latest figures as the campaign's one sync_analytics job (its result), so the
    details page has them when Instantly cannot be asked."""
    now = timezone.now()
    with transaction.atomic():
        job = (
            Job.objects.select_for_update()
            .filter(campaign=campaign, job_type=JobType.SYNC_ANALYTICS, lead__isnull=True)
            .order_by("-pk")
            .first()
        )
        if job is None:
            job = Job(campaign=campaign, job_type=JobType.SYNC_ANALYTICS)
        job.status, job.result, job.attempts = JobStatus.COMPLETED, analytics, job.attempts + 1
        job.started_at = job.finished_at = now
        job.save()
    return job


def instantly_analytics_last(*, campaign: Campaign) -> Job | None:
    return (
        Job.objects.filter(campaign=campaign, job_type=JobType.SYNC_ANALYTICS, status=JobStatus.COMPLETED)
        .order_by("-pk")
        .first()
    )
