"""A campaign's sequence: the steps after the first, A/B variants of any step, the sending window
and stop rules, and one row per (recipient, step) sent.

Step 1 is the campaign's own subject and body, so a campaign with no SequenceStep rows sends one
message as before. The unique (recipient, step) of StepSend makes "no step is sent twice to one
recipient" a fact the database holds, on top of the send claim (tracking/sending.py)."""

from datetime import date, time
from functools import lru_cache
from zoneinfo import available_timezones

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from campaigns.models import Campaign

from .models import Recipient


class StopReason(models.TextChoices):
    REPLIED = "replied"
    AUTO_REPLIED = "auto_replied"
    COMPANY_REPLIED = "company_replied"  # a colleague at the same company domain replied
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"  # here, or in another campaign of the organization
    COMPLAINED = "complained"
    CLICKED = "clicked"
    FINISHED = "finished"  # every step was sent


class SequenceStep(models.Model):
    """Step `number` (2 or more) of a campaign: sent `delay_days` (calendar or business days)
    after the previous step. `same_thread` sends it as a reply to the previous step (In-Reply-To
    and References, subject "Re: …" when its own subject is blank)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="sequence_steps", db_index=False)
    number = models.PositiveSmallIntegerField()
    delay_days = models.PositiveSmallIntegerField(default=3)
    business_days = models.BooleanField(default=False)
    same_thread = models.BooleanField(default=True)
    subject_template = models.TextField(blank=True)
    body_template = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["campaign", "number"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "number"], name="sequencestep_campaign_number_unique"),
            models.CheckConstraint(condition=Q(number__gte=2), name="sequencestep_number_after_first"),
        ]

    def __str__(self) -> str:
        return f"step {self.number}"

    def clean(self) -> None:
        # Checked when saved, as the campaign's own templates are (campaigns/templating.py).
        from campaigns.templating import campaign_templates_check

        campaign_templates_check(subject_template=self.subject_template, body_template=self.body_template)
        if not self.subject_template.strip() and not self.same_thread:
            raise ValidationError({"subject_template": ["Required unless the step replies in the same thread."]})


class StepVariant(models.Model):
    """An A/B variant of step `step` (1 is the campaign's message). A blank subject keeps the
    step's subject. Recipients are split by `weight`; once `is_winner` is set, only it is sent."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="step_variants", db_index=False)
    step = models.PositiveSmallIntegerField(default=1)
    label = models.CharField(max_length=32)
    subject_template = models.TextField(blank=True)
    body_template = models.TextField()
    weight = models.PositiveSmallIntegerField(default=50)
    is_winner = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign", "step", "label"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "step", "label"], name="stepvariant_step_label_unique"),
            # One winner per step, whoever picks it.
            models.UniqueConstraint(
                fields=["campaign", "step"], condition=Q(is_winner=True), name="stepvariant_one_winner_per_step"
            ),
        ]

    def __str__(self) -> str:
        return f"step {self.step} variant {self.label}"

    def clean(self) -> None:
        from campaigns.templating import campaign_templates_check

        campaign_templates_check(subject_template=self.subject_template, body_template=self.body_template)


def _weekdays() -> list[int]:
    return [0, 1, 2, 3, 4]


class SequenceSettings(models.Model):
    """A campaign's sending window and stop rules. No row: no window, today's stop rules."""

    class WinnerMetric(models.TextChoices):
        OPEN = "open"
        CLICK = "click"
        REPLY = "reply"

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="sequence_settings")
    window_enabled = models.BooleanField(default=False)
    timezone = models.CharField(max_length=64, default="UTC")
    days = models.JSONField(default=_weekdays, help_text="Days of the week, 0 = Monday … 6 = Sunday.")
    start_time = models.TimeField(default=time(9, 0))
    end_time = models.TimeField(default=time(17, 0))
    use_lead_timezone = models.BooleanField(default=False)  # the lead's enrichment "timezone", when known
    holidays = models.JSONField(default=list, blank=True, help_text="Dates (YYYY-MM-DD) nothing is sent on.")
    stop_on_click = models.BooleanField(default=False)
    stop_on_auto_reply = models.BooleanField(default=False)
    stop_company_on_reply = models.BooleanField(default=False)
    ab_winner_after = models.PositiveIntegerField(null=True, blank=True)  # sends of a step before picking
    ab_winner_metric = models.CharField(max_length=8, choices=WinnerMetric.choices, default=WinnerMetric.OPEN)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"sequence settings of {self.campaign_id}"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.timezone not in _zones():
            errors["timezone"] = [f"Unknown time zone {self.timezone!r} (an IANA name such as Europe/Berlin)."]
        days = self.days
        if not isinstance(days, list) or not days or any(type(d) is not int or not 0 <= d <= 6 for d in days):
            errors["days"] = ["A non-empty list of days of the week, 0 (Monday) to 6 (Sunday)."]
        holidays = self.holidays
        if not isinstance(holidays, list) or not all(_is_date(day) for day in holidays):
            errors["holidays"] = ["A list of dates written YYYY-MM-DD."]
        if self.start_time is not None and self.end_time is not None and self.start_time >= self.end_time:
            errors["end_time"] = ["Must be after start_time (a window within one day)."]
        if errors:
            raise ValidationError(errors)


@lru_cache(maxsize=1)
def _zones() -> set[str]:
    return available_timezones() | {"UTC"}


def _is_date(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


class StepSend(models.Model):
    """Step `step` (variant `variant`) sent to a recipient: written with the recipient's "sent"
    mark, in its transaction. The timeline and the per-variant stats read these rows."""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="step_sends", db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="step_sends", db_index=False)
    step = models.PositiveSmallIntegerField()
    variant = models.CharField(max_length=32, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    sent_at = models.DateTimeField()

    class Meta:
        ordering = ["recipient", "step"]
        constraints = [models.UniqueConstraint(fields=["recipient", "step"], name="stepsend_recipient_step_unique")]
        indexes = [
            models.Index(fields=["campaign", "step", "variant"], name="stepsend_campaign_step"),
            # A reply's In-Reply-To names any step's Message-ID, not only the last one.
            models.Index(fields=["message_id"], name="stepsend_message_id", condition=~Q(message_id="")),
        ]

    def __str__(self) -> str:
        return f"{self.recipient_id} step {self.step}"
