from typing import cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from campaigns_project.admin_site import BackOfficeAdminSite
from campaigns_project.errors import ApplicationError

from . import admin_jobs_leads, services
from .models import (
    CAMPAIGN_EMAIL_FIELDS,
    CAMPAIGN_IDENTITY_FIELDS,
    CAMPAIGN_PAUSE_FIELDS,
    CAMPAIGN_SOURCE_FIELDS,
    CAMPAIGN_TIMESTAMP_FIELDS,
    Campaign,
    CampaignEvent,
    Membership,
    Organization,
)
from .selectors import campaign_progress
from .states import (
    CAMPAIGN_ACTIONS,
    CAMPAIGN_DELETABLE_STATUSES,
    CAMPAIGN_EDITABLE_STATUSES,
    PauseKind,
    campaign_actions_allowed,
)

# Where a refused save or delete leaves its message for the response hooks below.
_REFUSED = "_campaign_admin_refused"


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


class CampaignEventInline(admin.TabularInline):
    model = CampaignEvent
    extra = 0
    can_delete = False
    fields = ["when", "action", "from_status", "to_status", "reason", "actor_label"]
    readonly_fields = fields  # type: ignore[assignment]  # the same names; the stubs type the two lists differently
    ordering = ["-created_at", "-id"]
    verbose_name_plural = "History"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="when")
    def when(self, event: CampaignEvent) -> str:
        return timezone.localtime(event.created_at).strftime("%Y-%m-%d %H:%M:%S")


class CampaignAdminForm(forms.ModelForm):
    # Model and fields come from CampaignAdmin's fieldsets (modelform_factory). The model's
    # clean() checks the templates, so template errors show on their fields.

    def clean(self):
        cleaned = super().clean()
        # A new campaign already has its UUID (the field's default), so `pk` says nothing here.
        if not self.instance._state.adding:
            status = Campaign.objects.filter(pk=self.instance.pk).values_list("status", flat=True).first()
            if status not in CAMPAIGN_EDITABLE_STATUSES:
                raise ValidationError(f"A {status} campaign cannot be edited.")
        return cleaned


class ScheduleForm(forms.Form):
    scheduled_at = forms.DateTimeField(
        label="Launch at",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        help_text="Server time zone.",
    )

    def clean_scheduled_at(self):
        value = self.cleaned_data["scheduled_at"]
        if value <= timezone.now():
            raise ValidationError("Must be in the future.")
        return value


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignAdminForm
    list_display = ["name", "organization", "status", "pause_cause_display", "phase", "progress_display", "created_at"]
    list_filter = ["status", "phase", "channel", "organization"]
    search_fields = ["name", "id"]
    list_select_related = ["organization"]
    date_hierarchy = "created_at"
    inlines = [CampaignEventInline]
    readonly_fields = [*services.STATE_FIELDS, "progress_display", "pause_cause_display"]  # only services move state
    fieldsets = [
        (None, {"fields": CAMPAIGN_IDENTITY_FIELDS}),
        (
            "State",
            {
                "fields": [
                    "status",
                    "pause_cause_display",
                    *CAMPAIGN_PAUSE_FIELDS,
                    "phase",
                    "progress_display",
                    "status_message",
                    "status_error",
                ]
            },
        ),
        ("Lead source", {"fields": CAMPAIGN_SOURCE_FIELDS}),
        ("Email", {"fields": CAMPAIGN_EMAIL_FIELDS}),
        ("Timestamps", {"classes": ["collapse"], "fields": CAMPAIGN_TIMESTAMP_FIELDS}),
    ]

    @admin.display(description="pause cause", ordering="pause_kind")
    def pause_cause_display(self, obj: Campaign) -> str:
        return obj.pause_cause or "-"

    @admin.display(description="progress")
    def progress_display(self, obj: Campaign) -> str:
        progress = campaign_progress(campaign=obj)
        if not obj.phase or obj.phase == "done":
            return f"{progress['overall']}%"
        return f"{progress['overall']}% overall ({obj.phase}: {progress['phase']}%)"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(deleted_at__isnull=True).prefetch_related("phases")

    def get_fieldsets(self, request, obj=None):
        if obj is None:  # a new campaign has no state and no timestamps yet
            return [fieldset for fieldset in self.fieldsets if fieldset[0] not in ("State", "Timestamps")]
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        # Content is frozen outside the editable statuses, as in the API; the organization is
        # chosen once, at creation.
        if obj is None:
            return self.readonly_fields
        if obj.status not in CAMPAIGN_EDITABLE_STATUSES:
            fields = (f.name for f in Campaign._meta.concrete_fields if f.name != "id")
            return [*fields, "progress_display", "pause_cause_display"]
        return [*self.readonly_fields, "organization"]

    def save_model(self, request, obj, form, change):
        # Through the services, like every other door: history rows, row locks, the same refusals.
        data = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        try:
            if change:
                services.campaign_update(campaign=obj, actor=request.user, **data)
            else:
                data.pop("organization", None)
                created = services.campaign_create(organization=obj.organization, actor=request.user, **data)
                obj.pk = created.pk
                obj._state.adding = False
        except (ApplicationError, ValidationError) as exc:
            # The status changed between the form's check and the save (a start in another tab).
            setattr(request, _REFUSED, " ".join(getattr(exc, "messages", None) or [str(exc)]))

    def delete_model(self, request, obj):
        try:
            services.campaign_delete(campaign=obj, actor=request.user)
        except ApplicationError as exc:
            setattr(request, _REFUSED, exc.message)

    def response_add(self, request, obj, post_url_continue=None):
        if hasattr(request, _REFUSED):
            self.message_user(request, f"Not saved: {getattr(request, _REFUSED)}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_changelist"))
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        if hasattr(request, _REFUSED):
            self.message_user(request, f"Not saved: {getattr(request, _REFUSED)}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[obj.pk]))
        return super().response_change(request, obj)

    def response_delete(self, request, obj_display, obj_id):
        if hasattr(request, _REFUSED):
            self.message_user(request, f"Not deleted: {getattr(request, _REFUSED)}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[obj_id]))
        return super().response_delete(request, obj_display, obj_id)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a bulk hard delete would bypass the soft delete
        return actions

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (
            obj is None or obj.status in CAMPAIGN_DELETABLE_STATUSES
        )

    def get_urls(self):
        custom = [
            path(
                "<uuid:object_id>/act/<str:action_name>/",
                self.admin_site.admin_view(require_POST(self.act_view)),
                name="campaigns_campaign_act",
            )
        ]
        return custom + super().get_urls()

    def campaign_buttons(self, campaign: Campaign) -> list[dict]:
        """One button per action the state table allows from the campaign's status; a button the
        service would still refuse (queue paused, breaker open, paused by the system, content
        missing) is disabled with the service's own reason."""
        buttons = []
        for action in campaign_actions_allowed(campaign.status):
            refusal = services.campaign_action_refusal(campaign=campaign, action=action.name)
            # A deliverability pause still above its threshold: resuming needs the operator to
            # acknowledge the figure, with a button of its own.
            acknowledge = bool(refusal) and action.name == "resume" and campaign.pause_kind == PauseKind.DELIVERABILITY
            acknowledge = acknowledge and not services.campaign_action_refusal(
                campaign=campaign, action=action.name, acknowledge=True
            )
            buttons.append(
                {"name": action.name, "refusal": refusal, "confirm": bool(action.confirm), "acknowledge": acknowledge}
            )
        return buttons

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        campaign = self.get_object(request, object_id)
        if campaign is not None:
            extra_context["campaign_buttons"] = self.campaign_buttons(campaign)
            extra_context["schedule_form"] = ScheduleForm()
            extra_context["campaign_panels"] = self.panels(campaign)
            if campaign.status not in CAMPAIGN_EDITABLE_STATUSES:
                # Nothing on the page can be saved: no Save buttons that would only be refused.
                extra_context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def panels(self, campaign: Campaign) -> list:
        # Registered by the apps in AppConfig.ready() (campaigns_project.admin_site).
        site = cast(BackOfficeAdminSite, self.admin_site)  # the back-office site; the stubs know only AdminSite
        return [panel(campaign) for panel in site.campaign_panels()]

    def act_view(self, request: HttpRequest, object_id, action_name: str):
        campaign = get_object_or_404(Campaign.objects.alive(), pk=object_id)
        url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        action = CAMPAIGN_ACTIONS.get(action_name)
        if action is None or not self.has_change_permission(request, campaign):
            messages.error(request, f"Unknown or forbidden action: {action_name}.")
            return HttpResponseRedirect(url)
        kwargs = {}
        if action.name == "schedule":
            form = ScheduleForm(request.POST)
            if not form.is_valid():
                errors = "; ".join(str(e) for errors in form.errors.values() for e in errors)
                messages.error(request, f"Schedule refused: {errors}")
                return HttpResponseRedirect(url)
            kwargs["scheduled_at"] = form.cleaned_data["scheduled_at"]
        if action.confirm and request.POST.get("confirmed") != "yes":
            return self.confirm_view(request, campaign, action)
        if action.name == "resume" and request.POST.get("acknowledge") == "yes":
            kwargs["acknowledge"] = True
        if action.name in ("pause", "cancel") and request.POST.get("reason", "").strip():
            kwargs["reason"] = request.POST["reason"].strip()[:500]
        try:
            services.ACTION_SERVICES[action.name](campaign_id=campaign.pk, actor=request.user, **kwargs)
        except ApplicationError as exc:
            messages.error(request, f"{action.name.capitalize()} refused: {exc.message}")
        else:
            messages.success(request, f"Campaign {action.name} done.")
        return HttpResponseRedirect(url)

    def confirm_view(self, request: HttpRequest, campaign: Campaign, action) -> TemplateResponse:
        """The question an irreversible action asks first; nothing has changed yet."""
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action.name.capitalize()} campaign “{campaign.name}”?",
            "opts": self.model._meta,
            "original": campaign,
            "action": action,
            "jobs": admin_jobs_leads.job_counts_for(campaign),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/confirm_action.html", context)


# Sender mailboxes have their own module (its panel on the campaign page is wired in apps.py).
from . import admin_mailboxes  # noqa: E402, F401
