"""Sender mailboxes of an organization (issue 15, point 4).

A campaign uses a set of them (`Mailbox.campaigns`, so `campaign.mailboxes`); at launch each
recipient is given one (`tracking.Recipient.mailbox`, rotation) and every step to that recipient
goes from it. A campaign with no mailbox keeps the single sender it always had (its from address
and the settings' SMTP).

The passwords are stored encrypted (Fernet, key MAILBOX_SECRET_KEY: campaigns/secrets.py) and are
never shown back: the API takes them write-only, the admin form never renders them.

A mailbox has its own pause latch, like the queue's: its SMTP breaker opening, or the
deliverability guard tripping on its figures, pauses it and what depends on it (its recipients'
threads; a campaign left with no other usable mailbox); only an operator resumes it
(campaigns/mailboxes.py).
"""

from datetime import date

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from .states import MailboxPauseKind


class Mailbox(models.Model):
    class SmtpSecurity(models.TextChoices):
        NONE = "none"  # plain SMTP: local sinks and relays on a private network only
        STARTTLS = "starttls"
        TLS = "tls"  # implicit TLS (SMTPS, port 465)

    organization = models.ForeignKey("campaigns.Organization", on_delete=models.CASCADE, related_name="mailboxes")
    name = models.CharField(max_length=120)
    from_email = models.EmailField()
    from_name = models.CharField(max_length=255, blank=True)

    smtp_host = models.CharField(max_length=255)
    smtp_port = models.PositiveIntegerField(default=587, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    smtp_username = models.CharField(max_length=255, blank=True)
    smtp_password_encrypted = models.TextField(blank=True, editable=False)
    smtp_security = models.CharField(max_length=16, choices=SmtpSecurity.choices, default=SmtpSecurity.STARTTLS)

    imap_host = models.CharField(max_length=255, blank=True)
    imap_port = models.PositiveIntegerField(default=993, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    imap_username = models.CharField(max_length=255, blank=True)
    imap_password_encrypted = models.TextField(blank=True, editable=False)
    imap_ssl = models.BooleanField(default=True)

    # Sends a day (UTC), the ceiling once ramped up.
    daily_cap = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1), MaxValueValidator(100_000)])
    # Ramp-up: a new mailbox starts at `ramp_start_cap` a day and gains `ramp_daily_increase`
    # each day since `ramp_started_on` until it reaches daily_cap. ramp_start_cap 0: no ramp-up.
    ramp_start_cap = models.PositiveIntegerField(default=0)
    ramp_daily_increase = models.PositiveIntegerField(default=0)
    ramp_started_on = models.DateField(default=date.today)
    # Seconds between two sends of this mailbox, across every worker.
    min_gap_seconds = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(86_400)])
    active = models.BooleanField(default=True)

    # The mailbox's own pause latch: set by its breaker or the deliverability guard, cleared only
    # by an operator (mailbox_resume).
    pause_kind = models.CharField(max_length=16, choices=MailboxPauseKind.choices, blank=True)
    pause_figure = models.CharField(max_length=255, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)

    campaigns = models.ManyToManyField("campaigns.Campaign", related_name="mailboxes", blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "name", "id"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="mailbox_org_name_unique")]
        verbose_name_plural = "mailboxes"

    def __str__(self) -> str:
        return f"{self.name} <{self.from_email}>"

    @property
    def is_paused(self) -> bool:
        return bool(self.pause_kind)

    def cap_on(self, day: date | None = None) -> int:
        """Today's cap (or `day`'s): the ramp-up's figure for that day, never above daily_cap."""
        if not self.ramp_start_cap:
            return self.daily_cap
        day = day or timezone.now().date()
        days = max((day - self.ramp_started_on).days, 0)
        return min(self.daily_cap, self.ramp_start_cap + self.ramp_daily_increase * days)

    @property
    def breaker_name(self) -> str:
        """The Redis name of this mailbox's SMTP breaker (queue_control.breakers)."""
        return f"mailbox.{self.pk}"
