"""The sequence in the admin: steps, variants and the window and stop rules, edited through the
same services as the API (validated, recorded in the campaign's history); a sequence panel on the
campaign page (steps and per-variant figures); a recipient's timeline on its page."""

from collections.abc import Callable
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from campaigns.admin_jobs_leads import CampaignFilter
from campaigns.models import Campaign
from campaigns_project.errors import ApplicationError

from . import sequence_services
from .models import Recipient
from .models_sequences import SequenceSettings, SequenceStep, StepVariant
from .sequence_stats import recipient_timeline, variant_stats


class _EditableCampaignForm(forms.ModelForm):
    """Refuses, in the form (so the page says why and nothing is written), a campaign whose
    sequence cannot be edited now."""

    def clean(self):
        data = cast(dict[str, Any], super().clean())  # a ModelForm's clean returns cleaned_data (stubs: or None)
        campaign = data.get("campaign") or getattr(self.instance, "campaign", None)
        refusal = sequence_services.sequence_edit_refusal(campaign)
        if refusal:
            raise ValidationError(refusal)
        return data


class _ThroughServices(admin.ModelAdmin):
    """Saves and deletes call the sequence services, so the admin writes what the API writes."""

    form = _EditableCampaignForm
    raw_id_fields = ["campaign"]
    list_select_related = ["campaign"]
    # Each subclass's: the form fields its service takes, and the service call that saves them.
    service_fields: tuple[str, ...]
    service_save: Callable[..., None]

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in self.service_fields if name in form.cleaned_data}
        try:
            self.service_save(obj, fields, change=change, actor=request.user)
        except (ValidationError, ApplicationError) as exc:  # the form checked both; a race can still lose
            self.message_user(request, str(getattr(exc, "message", exc)), messages.ERROR)

    def get_actions(self, request: HttpRequest):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a bulk delete would bypass the services (and leave gaps)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and sequence_services.sequence_edit_refusal(obj.campaign):
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="campaign", ordering="campaign__name")
    def campaign_name(self, obj) -> str:
        return obj.campaign.name


@admin.register(SequenceStep)
class SequenceStepAdmin(_ThroughServices):
    list_display = ["campaign_name", "number", "delay_days", "business_days", "same_thread", "subject_template"]
    list_filter = [CampaignFilter, "business_days", "same_thread"]
    search_fields = ["campaign__name", "subject_template"]
    readonly_fields = ["number"]
    service_fields = sequence_services.STEP_FIELDS

    def service_save(self, obj, fields, *, change, actor):
        if change:
            sequence_services.sequence_step_update(step=obj, actor=actor, **fields)
        else:
            obj.pk = sequence_services.sequence_step_create(campaign=obj.campaign, actor=actor, **fields).pk

    def delete_model(self, request: HttpRequest, obj: SequenceStep) -> None:
        sequence_services.sequence_step_delete(step=obj, actor=request.user)


@admin.register(StepVariant)
class StepVariantAdmin(_ThroughServices):
    list_display = ["campaign_name", "step", "label", "weight", "is_winner", "subject_template"]
    list_filter = [CampaignFilter, "is_winner"]
    search_fields = ["campaign__name", "label"]
    readonly_fields = ["is_winner"]
    service_fields = sequence_services.VARIANT_FIELDS

    def service_save(self, obj, fields, *, change, actor):
        if change:
            sequence_services.step_variant_update(variant=obj, actor=actor, **fields)
        else:
            obj.pk = sequence_services.step_variant_create(campaign=obj.campaign, actor=actor, **fields).pk

    def delete_model(self, request: HttpRequest, obj: StepVariant) -> None:
        sequence_services.step_variant_delete(variant=obj, actor=request.user)


@admin.register(SequenceSettings)
class SequenceSettingsAdmin(_ThroughServices):
    list_display = ["campaign_name", "window_enabled", "timezone", "start_time", "end_time", "stop_on_click"]
    list_filter = [CampaignFilter, "window_enabled", "stop_on_click", "stop_company_on_reply"]
    service_fields = sequence_services.SETTINGS_FIELDS

    def service_save(self, obj, fields, *, change, actor):
        obj.pk = sequence_services.sequence_settings_save(campaign=obj.campaign, actor=actor, **fields).pk


def campaign_sequence_panel(campaign: Campaign) -> SafeString:
    """The campaign's steps and, when it has variants, each variant's figures and significance."""
    if campaign is None or campaign.pk is None:
        return SafeString("")
    steps = list(SequenceStep.objects.filter(campaign=campaign).order_by("number"))
    rows = [(1, "—", campaign.subject_template, "")] + [
        (
            step.number,
            f"{step.delay_days} {'business ' if step.business_days else ''}day(s)",
            step.subject_template or ("(Re: previous)" if step.same_thread else ""),
            "same thread" if step.same_thread else "new thread",
        )
        for step in steps
    ]
    links = {
        name: f"{reverse(f'admin:tracking_{model}_changelist')}?campaign={campaign.pk}"
        for name, model in (("steps", "sequencestep"), ("variants", "stepvariant"), ("rules", "sequencesettings"))
    }
    html = format_html(
        "<h3>Sequence</h3><table><tr><th>step</th><th>after</th><th>subject</th><th></th></tr>{}</table>"
        '<p><a href="{}">Edit steps</a> · <a href="{}">A/B variants</a> · <a href="{}">Window and stop rules</a></p>',
        format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        links["steps"],
        links["variants"],
        links["rules"],
    )
    stats = variant_stats(campaign_id=campaign.pk)
    variant_rows = [
        (
            step["step"],
            variant["variant"] or "—",
            variant["sent"],
            variant["opens"],
            variant["clicks"],
            variant["replies"],
            variant["bounces"],
            _significance(variant),
            "winner" if variant["winner"] else "",
        )
        for step in stats["steps"]
        for variant in step["variants"]
        if len(step["variants"]) > 1 or variant["variant"]
    ]
    if variant_rows:
        html += format_html(
            "<h3>A/B variants (compared on {})</h3><table><tr><th>step</th><th>variant</th><th>sent</th>"
            "<th>opens</th><th>clicks</th><th>replies</th><th>bounces</th><th>vs first</th><th></th></tr>{}</table>",
            stats["metric"],
            format_html_join("", "<tr>" + "<td>{}</td>" * 9 + "</tr>", variant_rows),
        )
    return SafeString(html)


def _significance(variant: dict) -> str:
    test = variant.get("versus_first")
    if not test or test["p_value"] is None:
        return ""
    return f"p = {test['p_value']}" + (" (significant)" if test["significant"] else "")


def recipient_timeline_html(recipient: Recipient) -> SafeString:
    if recipient is None or recipient.pk is None:
        return SafeString("")
    timeline = recipient_timeline(recipient=recipient)
    rows = [
        (
            f"{entry['at']:%Y-%m-%d %H:%M:%S}",
            entry["kind"],
            entry.get("step") or "",
            entry.get("variant") or entry.get("reason") or entry.get("source") or "",
        )
        for entry in timeline["entries"]
    ]
    if timeline["next_send_at"]:
        rows.append((f"{timeline['next_send_at']:%Y-%m-%d %H:%M:%S}", "next step due", timeline["step"] + 1, ""))
    return format_html(
        "<table><tr><th>when</th><th>what</th><th>step</th><th></th></tr>{}</table>",
        format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
    )
