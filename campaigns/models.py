import uuid

from django.conf import settings
from django.core.validators import MaxLengthValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from .states import CampaignStatus, JobStatus, JobType, Phase


class Organization(models.Model):
    name = models.CharField(max_length=255)
    slug = models.SlugField(max_length=80, unique=True)
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
    pause_reason = models.CharField(max_length=64, blank=True)
    phase = models.CharField(max_length=16, choices=Phase.choices, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
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

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "status"], name="campaign_org_status"),
            models.Index(fields=["status"], name="campaign_status"),
            models.Index(fields=["created_at"], name="campaign_created"),
        ]

    def __str__(self) -> str:
        return self.name


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


class Job(models.Model):
    # No single-column indexes on the foreign keys: (campaign, status, id) and the unique
    # (lead, job_type) serve those lookups, and every extra index is written again for each of a
    # million rows a queue pause moves.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="jobs", db_index=False)
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, null=True, blank=True, related_name="jobs", db_index=False)
    job_type = models.CharField(max_length=32, choices=JobType.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "updated_at"], name="job_status_updated"),
            # The pipeline's phase checks: "any active job of these types left?" and the progress count.
            models.Index(fields=["campaign", "job_type", "status"], name="job_campaign_type_status"),
            # dispatch_campaign walks a campaign's pending jobs in id order, a chunk at a time.
            models.Index(fields=["campaign", "status", "id"], name="job_campaign_status_id"),
        ]
        constraints = [
            # One job of a kind per lead: a fan-out that runs twice cannot double the work.
            models.UniqueConstraint(
                fields=["lead", "job_type"], condition=Q(lead__isnull=False), name="job_one_per_lead_and_type"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} #{self.pk} ({self.status})"
