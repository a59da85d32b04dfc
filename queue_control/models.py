from django.conf import settings
from django.db import models
from django.utils import timezone


class QueueState(models.Model):
    """The queue latch: one durable row (pk=1). It is the truth; the Redis mirror only makes the
    gate cheap, and is rebuilt from this row whenever it is missing."""

    class State(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)

    class CauseKind(models.TextChoices):
        MANUAL = "manual"  # an operator (or a command) paused it: `reason` holds their words
        BREAKER = "breaker"  # a service's breaker opened: `cause_service` names it

    # Why it is paused, as fields; blank while active. Nothing parses `reason`.
    cause_kind = models.CharField(max_length=16, choices=CauseKind.choices, blank=True)
    cause_service = models.CharField(max_length=32, blank=True)
    reason = models.CharField(max_length=500, blank=True)  # the operator's words
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    changed_by_label = models.CharField(max_length=150, blank=True)  # a username, or "system"
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="queuestate_single_row")]
        # Granted by an admin to a non-staff user who may operate the platform's queue.
        permissions = [("operate_queue", "Can pause and resume the queue and reset circuit breakers")]

    def __str__(self) -> str:
        return f"queue {self.state}" + (f" ({self.cause_display})" if self.cause_display else "")

    @property
    def cause_display(self) -> str:
        """One readable string for the API, the admin and the banner: `breaker:apollo` for a
        breaker's pause, the operator's words otherwise. Derived, never parsed."""
        if self.cause_kind == self.CauseKind.BREAKER:
            return f"breaker:{self.cause_service}"
        return self.reason

    @classmethod
    def get(cls) -> "QueueState":
        """The latch row, created active if it does not exist yet (a fresh or reset database)."""
        state, _ = cls.objects.get_or_create(pk=1)
        return state

    @property
    def is_active(self) -> bool:
        return self.state == self.State.ACTIVE


class QueueEvent(models.Model):
    """Append-only history of queue and breaker transitions, for operators to read."""

    class Kind(models.TextChoices):
        QUEUE_PAUSED = "queue.paused"
        QUEUE_RESUMED = "queue.resumed"
        QUEUE_RESUME_REFUSED = "queue.resume_refused"
        BREAKER_OPENED = "breaker.opened"
        BREAKER_RESET = "breaker.reset"
        # A sender mailbox's own latch (service `mailbox.<id>`): campaigns/mailboxes.py.
        MAILBOX_PAUSED = "mailbox.paused"
        MAILBOX_RESUMED = "mailbox.resumed"
        MAILBOX_RESUME_REFUSED = "mailbox.resume_refused"

    kind = models.CharField(max_length=64, choices=Kind.choices)
    service = models.CharField(max_length=32, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["service", "kind", "-id"], name="queueevent_service_kind")]

    def __str__(self) -> str:
        return f"{self.kind} {self.service}".strip()
