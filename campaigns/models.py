import uuid

from django.conf import settings
from django.core.validators import MaxLengthValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from .states import (
    JOB_ACTIVE_STATUSES,
    JOB_FINAL_STATUSES,
    CampaignStatus,
    JobStatus,
    JobType,
    PauseKind,
    Phase,
    pause_cause_display,
)


class Organization(models.Model):
    name = models.CharField(max_length=255)
    slug = models.SlugField(max_length=80, unique=True)
    # Printed in every message's footer (CAN-SPAM asks for a valid postal address).
    postal_address = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        OPERATOR = "operator"
        VIEWER = "viewer"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.OPERATOR)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class CampaignQuerySet(models.QuerySet):
    def alive(self):
        return self.filter(deleted_at__isnull=True)


class Campaign(models.Model):
    class Channel(models.TextChoices):
        SMTP = "smtp"
        INSTANTLY = "instantly"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, validators=[MaxLengthValidator(10_000)])

    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    # The pause cause, as fields (states.PauseKind): set with status paused, cleared on resume.
    pause_kind = models.CharField(max_length=16, choices=PauseKind.choices, blank=True)
    pause_service = models.CharField(max_length=32, blank=True)  # kind breaker: the service
    pause_mailbox = models.ForeignKey(  # kind breaker or deliverability: the mailbox, if one
        "campaigns.Mailbox", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    pause_figure = models.CharField(max_length=255, blank=True)  # kind deliverability: what tripped
    phase = models.CharField(max_length=16, choices=Phase.choices, blank=True)
    status_message = models.CharField(max_length=500, blank=True)
    status_error = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    # Lead source: an Apollo people search, or a CSV upload.
    search_url = models.URLField(max_length=2000, blank=True)
    lead_count = models.PositiveIntegerField(default=100, validators=[MinValueValidator(1)])
    file_name = models.CharField(max_length=255, blank=True)
    total_records = models.PositiveIntegerField(null=True, blank=True)
    instantly_campaign_id = models.CharField(max_length=64, blank=True)

    # Email content.
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.SMTP)
    from_name = models.CharField(max_length=255, blank=True)
    from_email = models.EmailField(blank=True)
    reply_to = models.EmailField(blank=True)
    subject_template = models.CharField(max_length=998, blank=True)
    body_template = models.TextField(blank=True)
    send_rate_per_minute = models.PositiveIntegerField(default=60, validators=[MinValueValidator(1)])

    objects = CampaignQuerySet.as_manager()

    def clean(self) -> None:
        # Every save through a service (API, admin, commands) runs full_clean, so a template that
        # cannot render is refused, naming the field and the line, before anything is written.
        from .templating import campaign_templates_check

        campaign_templates_check(subject_template=self.subject_template, body_template=self.body_template)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "status"], name="campaign_org_status"),
            models.Index(fields=["status"], name="campaign_status"),
            models.Index(fields=["created_at"], name="campaign_created"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def pause_cause(self) -> str:
        """The cause as one readable string (display only; the fields are the truth)."""
        return pause_cause_display(
            kind=self.pause_kind, service=self.pause_service, mailbox_id=self.pause_mailbox_id, figure=self.pause_figure
        )


# The Campaign's fields in the groups every reader shows them in (the API's serializer, the admin's
# fieldsets, the services' rule of what an update may change): written once, here.
CAMPAIGN_IDENTITY_FIELDS = ("organization", "name", "description")
CAMPAIGN_PAUSE_FIELDS = ("pause_kind", "pause_service", "pause_mailbox", "pause_figure")
CAMPAIGN_SOURCE_FIELDS = ("search_url", "lead_count", "file_name", "total_records")
CAMPAIGN_EMAIL_FIELDS = (
    "channel",
    "from_name",
    "from_email",
    "reply_to",
    "subject_template",
    "body_template",
    "send_rate_per_minute",
    "instantly_campaign_id",
)
CAMPAIGN_TIMESTAMP_FIELDS = (
    "created_at",
    "updated_at",
    "scheduled_at",
    "started_at",
    "paused_at",
    "completed_at",
    "failed_at",
    "cancelled_at",
)
# Fields describing state: only services move them, never an update request.
CAMPAIGN_STATE_FIELDS = (
    "status",
    *CAMPAIGN_PAUSE_FIELDS,
    "phase",
    "status_message",
    "status_error",
    *CAMPAIGN_TIMESTAMP_FIELDS,
    "deleted_at",
    "instantly_campaign_id",
    "file_name",
    "total_records",
)


class CampaignEvent(models.Model):
    """Append-only history of a campaign's transitions: who, from what, to what, why, when."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)  # "system", "beat", a username
    action = models.CharField(max_length=64)  # dotted name, e.g. campaign.paused
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.from_status}->{self.to_status}"


class Lead(models.Model):
    class EmailStatus(models.TextChoices):
        UNVERIFIED = "unverified"
        VALID = "valid"
        INVALID = "invalid"
        CATCH_ALL = "catch_all"
        UNKNOWN = "unknown"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="leads")
    email = models.EmailField(max_length=254)
    first_name = models.CharField(max_length=255, blank=True)
    last_name = models.CharField(max_length=255, blank=True)
    title = models.CharField(max_length=255, blank=True)
    company = models.CharField(max_length=255, blank=True)
    company_domain = models.CharField(max_length=255, blank=True)
    linkedin_url = models.URLField(max_length=500, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=16, default="apollo")  # apollo | csv | api
    source_id = models.CharField(max_length=128, blank=True)
    email_status = models.CharField(max_length=16, choices=EmailStatus.choices, default=EmailStatus.UNVERIFIED)
    enrichment = models.JSONField(default=dict, blank=True)
    enriched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "email"], name="lead_campaign_email_unique")]
        indexes = [
            models.Index(fields=["campaign", "email_status"], name="lead_campaign_status"),
            # Pages of a campaign's leads in id order (results API, Instantly push) without a sort.
            models.Index(fields=["campaign", "id"], name="lead_campaign_id"),
        ]

    def __str__(self) -> str:
        return self.email


class CampaignPhase(models.Model):
    """One phase of one campaign: its jobs and items, counted as they finish, and its timings.

    The counters are what progress and the end of a phase are read from, so neither needs a COUNT
    over a million leads nor the campaign's row lock: each job outcome adds to this row in the
    transaction that records it, and the one outcome that makes `jobs_finished` reach `jobs_total`
    is the one that moves the campaign on (campaigns/jobs.py, job_finish)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="phases")
    phase = models.CharField(max_length=16, choices=Phase.choices)
    jobs_total = models.PositiveIntegerField(default=0)
    jobs_finished = models.PositiveIntegerField(default=0)
    # Leads (sourcing, verification, enrichment) or recipients (outreach) the phase works on; how
    # many it finished (of which `items_passed` go on: leads stored, verified sendable, enriched,
    # mails sent) and how many it gave up on.
    items_total = models.PositiveBigIntegerField(default=0)
    items_done = models.PositiveBigIntegerField(default=0)
    items_passed = models.PositiveBigIntegerField(default=0)
    items_failed = models.PositiveBigIntegerField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["campaign", "started_at", "id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "phase"], name="campaignphase_unique")]

    def __str__(self) -> str:
        return f"{self.phase} {self.items_done + self.items_failed}/{self.items_total}"

    @property
    def progress(self) -> int:
        """0-100: the share of the phase's items finished (jobs when it counts no items)."""
        if self.finished_at is not None:
            return 100
        if self.items_total:
            return min(100, (self.items_done + self.items_failed) * 100 // self.items_total)
        return self.jobs_finished * 100 // self.jobs_total if self.jobs_total else 0


class JobQuerySet(models.QuerySet):
    def active(self):
        """Pending, processing or paused jobs. Written as `finished_at IS NULL`, which the
        constraint job_finished_iff_final makes the same thing, so that the partial index serves it."""
        return self.filter(finished_at__isnull=True)


class Job(models.Model):
    """One unit of pipeline work: a batch of leads to verify or enrich (the lead ids from
    `range_start` to `range_end`), a batch of recipients to send to (claimed when it runs), a
    lead search, or an Instantly push.

    The row is the durable, claimable record (claimed once, by one conditional UPDATE); a Celery
    message only wakes a worker to claim the next job of a campaign (campaigns/dispatch.py).

    A queue pause rewrites the status of every active job in one UPDATE. It stays fast because
    that UPDATE is HOT in PostgreSQL: no index holds `status` or `updated_at`, and the table keeps
    free room in each page (fillfactor, migration 0005), so each new row version lands beside the
    old one and no index is written (docs/decisions.md, benchmarks/cascade.py).
    """

    # No database-level foreign key: its per-row trigger made the pause's UPDATE a quarter slower
    # (docs/decisions.md). Django still cascades a campaign's deletion to its jobs; jobs are only
    # ever created by the campaign's own pipeline.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="jobs", db_index=False, db_constraint=False
    )
    job_type = models.CharField(max_length=32, choices=JobType.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    # Every claim adds one: the attempt number is also the claim's fencing token, so a worker that
    # lost its job (reaped while it was stalled) can no longer record anything for it.
    attempts = models.PositiveSmallIntegerField(default=0)
    range_start = models.BigIntegerField(null=True, blank=True)
    range_end = models.BigIntegerField(null=True, blank=True)
    size = models.PositiveIntegerField(default=0)  # the items the batch plans to work on
    run_after = models.DateTimeField(null=True, blank=True)  # a retry waits until then
    last_error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)  # also the heartbeat of a processing job
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            # A campaign's jobs: the foreign key, counts by status and type.
            models.Index(fields=["campaign", "job_type"], name="job_campaign_type"),
            # A campaign's active jobs in id order: the claim of the next one, resume, cancel, the
            # sweeper. Partial: finished jobs, most of the table, stay out of it.
            models.Index(
                fields=["campaign", "id"], condition=Q(finished_at__isnull=True), name="job_active_campaign_id"
            ),
        ]
        constraints = [
            # One batch job per range: a fan-out that runs twice cannot double the work.
            models.UniqueConstraint(
                fields=["campaign", "job_type", "range_start"],
                condition=Q(range_start__isnull=False),
                name="job_one_per_batch",
            ),
            # finished_at is set exactly when the job is final, so `active()` can test it alone.
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True, status__in=JOB_ACTIVE_STATUSES)
                | Q(finished_at__isnull=False, status__in=JOB_FINAL_STATUSES),
                name="job_finished_iff_final",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} #{self.pk} ({self.status})"


class InstantlyAnalytics(models.Model):
    """Instantly's own figures for a campaign pushed there, as the periodic sync
    (campaigns.tasks.sync_instantly_analytics, guarded by the breaker) last read them. The API
    reads these; no endpoint asks Instantly itself."""

    campaign = models.OneToOneField(
        Campaign, on_delete=models.CASCADE, primary_key=True, related_name="instantly_analytics"
    )
    figures = models.JSONField(null=True, blank=True, help_text="Instantly's answer at the last successful sync")
    synced_at = models.DateTimeField(null=True, blank=True, help_text="when the figures were read")
    error = models.TextField(blank=True, help_text="why the last sync of this campaign failed; empty after a success")
    attempted_at = models.DateTimeField(null=True, blank=True, help_text="the last sync, successful or not")

    class Meta:
        verbose_name_plural = "Instantly analytics"

    def __str__(self) -> str:
        return f"Instantly analytics of campaign {self.campaign_id}"


# Sender mailboxes live in their own module (campaigns/models_mailboxes.py).
from .models_mailboxes import Mailbox  # noqa: E402, F401
