"""The admin of sender mailboxes: passwords are write-only (a blank field keeps the stored one,
nothing is ever rendered back), every change goes through campaigns/mailboxes.py, and the
pause latch has its buttons (resume, resume acknowledging the figure, reset the breaker) as
bulk actions that explain a refusal in words."""

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from campaigns_project.errors import ApplicationError
from queue_control import breakers
from queue_control.selectors import breaker_state

from . import mailboxes
from .models import Campaign, Mailbox


def mailboxes_panel(campaign: Campaign) -> str:
    """The campaign page's mailboxes: each with today's cap, its latch and its breaker (one
    query; a breaker state each, from Redis). Empty when the campaign sends as its own sender."""
    rows = list(campaign.mailboxes.order_by("name"))
    if not rows:
        return ""
    cells = format_html_join(
        "",
        '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
        (
            (
                reverse("admin:campaigns_mailbox_change", args=[m.pk]),
                m.name,
                m.from_email,
                m.cap_on(),
                f"{m.pause_kind}: {m.pause_figure}"[:160] if m.pause_kind else ("active" if m.active else "inactive"),
                breaker_state(breakers.mailbox_breaker(m.pk)),
            )
            for m in rows
        ),
    )
    return format_html(
        '<fieldset class="module aligned" id="campaign-mailboxes"><h2>Mailboxes ({})</h2><table>'
        "<tr><th>mailbox</th><th>from</th><th>cap today</th><th>state</th><th>SMTP breaker</th></tr>{}</table>"
        "</fieldset>",
        len(rows),
        cells,
    )


class MailboxAdminForm(forms.ModelForm):
    smtp_password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted, never shown. Leave blank to keep the stored one.",
    )
    imap_password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted, never shown. Leave blank to keep the stored one.",
    )
    clear_passwords = forms.BooleanField(required=False, help_text="Remove both stored passwords.")

    class Meta:
        model = Mailbox
        fields = ["organization", *mailboxes.MAILBOX_FIELDS, "campaigns"]

    def clean(self):
        cleaned = cast(dict[str, Any], super().clean())  # a ModelForm's clean returns cleaned_data (stubs: or None)
        if self.errors:
            return cleaned
        probe = Mailbox(**{name: cleaned.get(name) for name in mailboxes.MAILBOX_FIELDS if name in cleaned})
        try:
            mailboxes._ramp_check(probe)
            organization = cleaned.get("organization") or getattr(self.instance, "organization", None)
            if organization is not None:
                mailboxes._campaigns_check(
                    organization_id=organization.pk, campaigns=list(cleaned.get("campaigns") or [])
                )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field, errors)
        return cleaned


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    form = MailboxAdminForm
    list_display = ["name", "organization", "from_email", "active", "cap_today", "min_gap_seconds", "latch", "breaker"]
    list_filter = ["active", "pause_kind", "organization"]
    search_fields = ["name", "from_email"]
    list_select_related = ["organization"]
    filter_horizontal = ["campaigns"]
    readonly_fields = ["pause_kind", "pause_figure", "paused_at", "cap_today", "breaker", "created_at", "updated_at"]
    actions = ["resume_mailboxes", "resume_mailboxes_acknowledged", "reset_breakers"]
    fieldsets = [
        (None, {"fields": ["organization", "name", "from_email", "from_name", "active", "campaigns"]}),
        ("SMTP", {"fields": ["smtp_host", "smtp_port", "smtp_security", "smtp_username", "smtp_password"]}),
        ("IMAP (replies)", {"fields": ["imap_host", "imap_port", "imap_ssl", "imap_username", "imap_password"]}),
        (
            "Caps",
            {
                "fields": [
                    "daily_cap",
                    "ramp_start_cap",
                    "ramp_daily_increase",
                    "ramp_started_on",
                    "cap_today",
                    "min_gap_seconds",
                ]
            },
        ),
        ("Pause latch", {"fields": ["pause_kind", "pause_figure", "paused_at", "breaker", "clear_passwords"]}),
    ]

    @admin.display(description="cap today")
    def cap_today(self, obj: Mailbox) -> int | str:
        return obj.cap_on() if obj.pk else "-"

    @admin.display(description="paused")
    def latch(self, obj: Mailbox) -> str:
        return f"{obj.pause_kind}: {obj.pause_figure}"[:120] if obj.pause_kind else "-"

    @admin.display(description="SMTP breaker")
    def breaker(self, obj: Mailbox) -> str:
        return breaker_state(breakers.mailbox_breaker(obj.pk)) if obj.pk else "-"

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in mailboxes.MAILBOX_FIELDS if name in form.cleaned_data}
        passwords = {
            name: form.cleaned_data[name] for name in ("smtp_password", "imap_password") if form.cleaned_data.get(name)
        }
        if form.cleaned_data.get("clear_passwords"):
            passwords = {"smtp_password": "", "imap_password": ""}
        campaigns = list(form.cleaned_data.get("campaigns") or [])
        if change:
            mailboxes.mailbox_update(mailbox=obj, actor=request.user, campaigns=campaigns, **passwords, **data)
        else:
            created = mailboxes.mailbox_create(
                organization=form.cleaned_data["organization"],
                actor=request.user,
                campaigns=campaigns,
                **passwords,
                **data,
            )
            obj.pk = created.pk
            obj._state.adding = False

    def save_related(self, request, form, formsets, change):
        # The campaigns were set by the service; the form's own m2m save would set them again.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request, obj):
        try:
            mailboxes.mailbox_delete(mailbox=obj, actor=request.user)
        except ApplicationError as exc:
            self.message_user(request, f"Not deleted: {exc.message}", messages.ERROR)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a bulk delete would skip the service's refusal
        return actions

    def _resume(self, request, queryset, *, acknowledge: bool) -> None:
        for mailbox in queryset:  # a few mailboxes, each its own locked service call
            try:
                mailboxes.mailbox_resume(mailbox_id=mailbox.pk, actor=request.user, acknowledge=acknowledge)
            except ApplicationError as exc:
                self.message_user(request, f"{mailbox.name}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{mailbox.name}: resumed.", messages.SUCCESS)

    @admin.action(description="Resume the selected mailboxes")
    def resume_mailboxes(self, request, queryset):
        self._resume(request, queryset, acknowledge=False)

    @admin.action(description="Resume, acknowledging a deliverability figure still above its threshold")
    def resume_mailboxes_acknowledged(self, request, queryset):
        self._resume(request, queryset, acknowledge=True)

    @admin.action(description="Reset the selected mailboxes' SMTP breakers")
    def reset_breakers(self, request, queryset):
        for mailbox in queryset:
            state = mailboxes.mailbox_breaker_reset(mailbox_id=mailbox.pk, actor=request.user)
            self.message_user(request, f"{mailbox.name}: breaker {state}; the mailbox stays paused until resumed.")
