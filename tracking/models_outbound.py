"""Outgoing webhooks: an organization's endpoints, the events emitted for them, one delivery per
(event, endpoint). The delivery rows are the outbox: written in the transaction of the fact they
report, delivered after commit by the webhooks queue's workers (tracking/outbound.py), so an
event is delivered at least once whatever crashes in between. Imported by tracking/models.py."""

import base64
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Organization


def new_webhook_secret() -> str:
    # Standard Webhooks' format: whsec_ and base64 of the key's bytes (24 random bytes, 192 bits).
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class WebhookEventType(models.TextChoices):
    CAMPAIGN_STATUS_CHANGED = "campaign.status_changed"
    CAMPAIGN_PHASE_CHANGED = "campaign.phase_changed"
    QUEUE_PAUSED = "queue.paused"
    QUEUE_RESUMED = "queue.resumed"
    BREAKER_OPENED = "breaker.opened"
    BREAKER_RESET = "breaker.reset"
    EMAIL_SENT = "email.sent"
    EMAIL_OPENED = "email.opened"
    EMAIL_CLICKED = "email.clicked"
    EMAIL_REPLIED = "email.replied"
    EMAIL_AUTO_REPLIED = "email.auto_replied"
    EMAIL_BOUNCED = "email.bounced"
    EMAIL_UNSUBSCRIBED = "email.unsubscribed"
    EMAIL_COMPLAINED = "email.complained"
    # Sent to one endpoint on request (POST …/webhook-endpoints/{id}/test); nobody subscribes to it.
    TEST = "webhook.test"


SUBSCRIBABLE_EVENT_TYPES = [value for value in WebhookEventType.values if value != WebhookEventType.TEST]


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=255, blank=True)
    secret = models.CharField(max_length=64, default=new_webhook_secret)
    event_types = models.JSONField(default=list)  # names from SUBSCRIBABLE_EVENT_TYPES
    is_active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    # Failing since the first failed attempt after the last success; cleared by a success.
    failing_since = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # While failing, no delivery to this endpoint is attempted before this time (its backoff).
    retry_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "is_active"], name="webhookendpoint_org_active")]

    def __str__(self) -> str:
        return self.url


class WebhookEvent(models.Model):
    """One fact, as integrators receive it. Its id is the `webhook-id` header every delivery of it
    carries (and a replay too): a receiver de-duplicates on it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # None for the platform's events (the queue, the breakers): every organization may get them.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="webhook_events"
    )
    type = models.CharField(max_length=48, choices=WebhookEventType.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"

    def body(self) -> dict:
        """What is POSTed: the envelope of every event."""
        return {"id": str(self.id), "type": self.type, "timestamp": self.created_at.isoformat(), "data": self.data}


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for its (next) attempt
        DELIVERED = "delivered"  # the endpoint answered 2xx
        FAILED = "failed"  # given up (retry time over, endpoint disabled or deleted); replayable

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    retry_until = models.DateTimeField()
    # A worker holds the delivery until then (the claim); a lost worker's claim runs out.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_response = models.TextField(blank=True)  # the answer's first 1,000 characters
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhookdelivery_event_endpoint"),
        ]
        indexes = [
            # The claim: pending deliveries in the order they are due.
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhookdelivery_due"),
            # An endpoint's delivery log, newest first.
            models.Index(fields=["endpoint", "-id"], name="webhookdelivery_endpoint"),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event.type} → {self.endpoint.url} ({self.status})"
