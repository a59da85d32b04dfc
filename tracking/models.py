import secrets

from django.db import models
from django.db.models import Q

from campaigns.models import Campaign, Lead, Organization

from .states import EventType, RecipientStatus, SuppressionReason


def new_token() -> str:
    # 192 random bits: tracking URLs are public, so the token is the only thing guarding them.
    return secrets.token_urlsafe(24)


class Recipient(models.Model):
    # No index of its own: (campaign, status, id) and unique (campaign, email) lead with it.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients", db_index=False)
    lead = models.ForeignKey(Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="recipients")
    email = models.EmailField(max_length=254)  # stored lower-cased: dedupe and suppression ignore case
    status = models.CharField(max_length=16, choices=RecipientStatus.choices, default=RecipientStatus.PENDING)
    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    message_id = models.CharField(max_length=255, blank=True)
    # The sender mailbox, given at launch (rotation); every step to this recipient goes from it.
    # Null: the campaign has no mailboxes and sends as it always did.
    mailbox = models.ForeignKey(
        "campaigns.Mailbox", on_delete=models.PROTECT, null=True, blank=True, related_name="recipients"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)  # entered `sending`; finds the stuck ones
    # The send job that claimed it (no foreign key: jobs are deleted by retention, this stays as a
    # record), and how many times a job claimed it; RECIPIENT_MAX_SEND_ATTEMPTS bounds the retries.
    send_job_id = models.BigIntegerField(null=True, blank=True)
    send_attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    # First opens and clicks, of any kind and by a human: they decide the unique counters.
    first_opened_at = models.DateTimeField(null=True, blank=True)
    first_human_opened_at = models.DateTimeField(null=True, blank=True)
    first_clicked_at = models.DateTimeField(null=True, blank=True)
    first_human_clicked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # The sequence (tracking/sequences.py): the step it is on (being sent, or the last one sent),
    # when its next step (or a step held for the window) is due, and
    # whether and why it stopped.
    sequence_step = models.PositiveSmallIntegerField(default=1, db_default=1)
    next_send_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=16, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "email"], name="recipient_campaign_email_unique")]
        indexes = [
            # The send claim (pending, this campaign) and the status filter of the list.
            models.Index(fields=["campaign", "status", "id"], name="recipient_campaign_status"),
            # Webhooks find a recipient by the Message-ID we gave it.
            models.Index(fields=["message_id"], name="recipient_message_id", condition=~Q(message_id="")),
            # The recipients a send job holds (its recovery) and "stuck in sending" for the admin.
            models.Index(fields=["send_job_id", "claimed_at"], name="recipient_sending", condition=Q(status="sending")),
            # The sweep that arms recipients whose next step is due.
            models.Index(
                fields=["campaign", "next_send_at"], name="recipient_next_send", condition=Q(next_send_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return self.email


class Link(models.Model):
    """A URL found in a campaign's body. Click URLs carry only this id, so a click can redirect to
    nothing but a URL the campaign itself contains."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="links")
    url = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "url"], name="link_campaign_url_unique")]

    def __str__(self) -> str:
        return self.url


class EmailEvent(models.Model):
    # Every index costs each pixel hit a write, so the foreign keys use the composite indexes below
    # (which lead with them) instead of one index each.
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="events", db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="email_events", db_index=False)
    type = models.CharField(max_length=16, choices=EventType.choices)
    occurred_at = models.DateTimeField()
    link = models.ForeignKey(
        Link, on_delete=models.SET_NULL, null=True, blank=True, related_name="events", db_index=False
    )
    user_agent = models.CharField(max_length=512, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    is_machine = models.BooleanField(default=False)
    source = models.CharField(max_length=32, default="tracking")  # tracking | api | generic | instantly
    provider_event_id = models.CharField(max_length=255, null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            # Replay protection: a provider's event is recorded once, however often it is posted.
            models.UniqueConstraint(
                fields=["source", "provider_event_id"],
                condition=Q(provider_event_id__isnull=False),
                name="emailevent_provider_event_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "type", "is_machine"], name="emailevent_campaign_type"),
            models.Index(fields=["campaign", "occurred_at"], name="emailevent_campaign_time"),
            models.Index(fields=["recipient", "occurred_at"], name="emailevent_recipient_time"),
            # Opens carry no link: only clicks need finding by link (top links, a link's deletion).
            models.Index(fields=["link"], name="emailevent_link", condition=Q(link__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.recipient_id}"


class Suppression(models.Model):
    """Addresses no campaign of the organization may email again."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="suppressions")
    email = models.EmailField(max_length=254)  # lower-cased
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["organization", "email"], name="suppression_org_email_unique")]

    def __str__(self) -> str:
        return f"{self.email} ({self.reason})"


class CampaignCounter(models.Model):
    """The stored form of a campaign's stats, incremented in the same transaction as the fact it
    counts (a recipient transition, a recorded event). Stats read only these rows; they are never
    also derived from events at read time (see tracking/counters.py).

    Each metric is spread over a few shards so that concurrent opens of one campaign do not all
    queue on one row lock."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="counters", db_index=False)
    metric = models.CharField(max_length=48)
    shard = models.PositiveSmallIntegerField(default=0)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "metric", "shard"], name="campaigncounter_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.metric}[{self.shard}]={self.value}"


# Outgoing webhooks live in their own module (tracking/models_outbound.py), the IMAP reply
# poller's place in each mailbox in tracking/models_inbound.py, the deliverability guard's
# acknowledged baselines in tracking/models_deliverability.py.
from .models_deliverability import DeliverabilityBaseline  # noqa: E402, F401
from .models_inbound import ImapAccountState  # noqa: E402, F401
from .models_outbound import WebhookDelivery, WebhookEndpoint, WebhookEvent  # noqa: E402, F401
from .models_sequences import SequenceSettings, SequenceStep, StepSend, StepVariant  # noqa: E402, F401
