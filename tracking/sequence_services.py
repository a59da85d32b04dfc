"""Writes of a campaign's sequence, for the API and the admin alike: steps, variants and the
window and stop rules. Each is validated as the campaign's own templates are (full_clean), written
in one transaction and recorded in the campaign's history."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max

from campaigns.models import Campaign
from campaigns.states import CAMPAIGN_EDITABLE_STATUSES
from campaigns.transitions import campaign_event_record
from campaigns_project.errors import ApplicationError

from .models_sequences import SequenceSettings, SequenceStep, StepVariant

STEP_FIELDS = ("delay_days", "business_days", "same_thread", "subject_template", "body_template")
VARIANT_FIELDS = ("step", "label", "subject_template", "body_template", "weight")
SETTINGS_FIELDS = (
    "window_enabled",
    "timezone",
    "days",
    "start_time",
    "end_time",
    "use_lead_timezone",
    "holidays",
    "stop_on_click",
    "stop_on_auto_reply",
    "stop_company_on_reply",
    "ab_winner_after",
    "ab_winner_metric",
)


def _record(campaign: Campaign, action: str, actor, reason: str) -> None:
    campaign_event_record(campaign=campaign, action=action, actor=actor, reason=reason)


def sequence_edit_refusal(campaign: Campaign | None) -> str:
    """Why the campaign's sequence cannot be edited now ("" when it can): the campaign's own
    content rule, so a running campaign is paused before its steps change under its sends."""
    if campaign is None or campaign.status in CAMPAIGN_EDITABLE_STATUSES:
        return ""
    return (
        f"Cannot edit the sequence of a {campaign.status} campaign; edits are allowed while "
        f"{', '.join(CAMPAIGN_EDITABLE_STATUSES)}."
    )


def _lock_editable(campaign: Campaign) -> Campaign:
    """The campaign row locked (one edit of its sequence at a time, and no start slipping in
    between the check and the write), or ApplicationError (409) when it is not editable."""
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    refusal = sequence_edit_refusal(locked)
    if refusal:
        raise ApplicationError(refusal, current_status=locked.status)
    return locked


def sequence_step_create(*, campaign: Campaign, actor=None, **fields) -> SequenceStep:
    """A step at the end of the sequence (the next number after the last)."""
    with transaction.atomic():
        _lock_editable(campaign)
        last = SequenceStep.objects.filter(campaign=campaign).aggregate(n=Max("number"))["n"] or 1
        step = SequenceStep(campaign=campaign, number=last + 1, **fields)
        step.full_clean()
        step.save()
        _record(campaign, "sequence.step_added", actor, f"step {step.number}")
    return step


def sequence_step_update(*, step: SequenceStep, actor=None, **fields) -> SequenceStep:
    with transaction.atomic():
        _lock_editable(step.campaign)
        for name, value in fields.items():
            setattr(step, name, value)
        step.full_clean()
        step.save()
        _record(step.campaign, "sequence.step_changed", actor, f"step {step.number}")
    return step


def sequence_step_delete(*, step: SequenceStep, actor=None) -> None:
    """Delete a step; the later ones move up one number, so the sequence has no gap. Two UPDATEs
    (out of range, then back) because the unique (campaign, number) is checked row by row."""
    campaign, number = step.campaign, step.number
    with transaction.atomic():
        _lock_editable(campaign)
        step.delete()
        StepVariant.objects.filter(campaign=campaign, step=number).delete()
        later = SequenceStep.objects.filter(campaign=campaign, number__gt=number)
        later.update(number=F("number") + 1000)
        SequenceStep.objects.filter(campaign=campaign, number__gt=1000).update(number=F("number") - 1001)
        variants = StepVariant.objects.filter(campaign=campaign, step__gt=number)
        variants.update(step=F("step") + 1000)
        StepVariant.objects.filter(campaign=campaign, step__gt=1000).update(step=F("step") - 1001)
        _record(campaign, "sequence.step_deleted", actor, f"step {number}")


def _step_exists(campaign: Campaign, step: int) -> bool:
    return step == 1 or SequenceStep.objects.filter(campaign=campaign, number=step).exists()


def step_variant_create(*, campaign: Campaign, actor=None, **fields) -> StepVariant:
    with transaction.atomic():
        _lock_editable(campaign)
        variant = StepVariant(campaign=campaign, **fields)
        if not _step_exists(campaign, variant.step):
            raise ValidationError({"step": [f"The campaign has no step {variant.step}."]})
        variant.full_clean()
        variant.save()
        _record(campaign, "sequence.variant_added", actor, f"step {variant.step} variant {variant.label}")
    return variant


def step_variant_update(*, variant: StepVariant, actor=None, **fields) -> StepVariant:
    with transaction.atomic():
        _lock_editable(variant.campaign)
        for name, value in fields.items():
            setattr(variant, name, value)
        if not _step_exists(variant.campaign, variant.step):
            raise ValidationError({"step": [f"The campaign has no step {variant.step}."]})
        variant.full_clean()
        variant.save()
        _record(variant.campaign, "sequence.variant_changed", actor, f"step {variant.step} variant {variant.label}")
    return variant


def step_variant_delete(*, variant: StepVariant, actor=None) -> None:
    with transaction.atomic():
        _lock_editable(variant.campaign)
        variant.delete()
        _record(variant.campaign, "sequence.variant_deleted", actor, f"step {variant.step} variant {variant.label}")


def sequence_settings_save(*, campaign: Campaign, actor=None, **fields) -> SequenceSettings:
    """Create or change the campaign's window and stop rules (fields left out keep their value)."""
    with transaction.atomic():
        _lock_editable(campaign)
        rules = SequenceSettings.objects.filter(campaign=campaign).first()
        rules = rules or SequenceSettings(campaign=campaign)
        for name, value in fields.items():
            setattr(rules, name, value)
        rules.full_clean(exclude=["campaign"])
        rules.save()
        _record(campaign, "sequence.settings_changed", actor, ", ".join(sorted(fields)) or "defaults")
    return rules
