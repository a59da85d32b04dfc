from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from campaigns.admin_jobs_leads import BoundedCountPaginator, CampaignFilter
from campaigns_project.admin import ReadOnlyAdminMixin, truncated

from . import selectors, services
from .admin_sequences import recipient_timeline_html
from .models import EmailEvent, Link, Recipient, Suppression
from .states import RecipientStatus


class StuckInSendingFilter(admin.SimpleListFilter):
    """Recipients claimed by a send job long ago and never marked sent: the server may or may not
    have accepted them, so they are shown to an operator instead of being resent."""

    title = "stuck in sending"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        minutes = int(selectors.STUCK_SENDING_AFTER / timedelta(minutes=1))
        return [("yes", f"In sending for more than {minutes} minutes")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(pk__in=selectors.recipients_stuck_in_sending(now=timezone.now()).values("pk"))
        return queryset


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    list_display = [
        "email_short",
        "campaign_name",
        "status",
        "mailbox",
        "sequence_step",
        "stop_reason",
        "claimed_at",
        "sent_at",
        "first_human_open",
        "error",
    ]
    list_filter = ["status", StuckInSendingFilter, CampaignFilter]
    list_select_related = ["campaign", "mailbox"]
    search_fields = ["email", "message_id"]
    raw_id_fields = ["campaign", "lead", "mailbox"]
    show_full_result_count = False
    readonly_fields = [f.name for f in Recipient._meta.fields] + ["timeline"]
    actions = ["release_to_pending", "mark_delivered", "mark_failed"]

    @admin.display(description="timeline (steps sent, events, stop)")
    def timeline(self, recipient: Recipient):
        return recipient_timeline_html(recipient)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # recipients come from the launcher or the API, which dedupe and suppress

    @admin.display(description="email", ordering="email")
    def email_short(self, recipient: Recipient) -> str:
        return truncated(recipient.email, 36)

    @admin.display(description="campaign", ordering="campaign__name")
    def campaign_name(self, recipient: Recipient) -> str:
        return truncated(recipient.campaign.name, 28)

    @admin.display(description="first human open", ordering="first_human_opened_at")
    def first_human_open(self, recipient: Recipient):
        return recipient.first_human_opened_at

    @admin.display(description="last error")
    def error(self, recipient: Recipient) -> str:
        return truncated(recipient.last_error, 60)

    @admin.action(description="Resend: put stuck-in-sending recipients back to pending (after checking the mail logs)")
    def release_to_pending(self, request: HttpRequest, queryset: QuerySet[Recipient]) -> None:
        released = services.recipients_release(
            recipient_ids=queryset.filter(status=RecipientStatus.SENDING).values_list("pk", flat=True),
            actor=request.user,
        )
        skipped = queryset.count() - released
        self.message_user(request, f"{released} recipient(s) put back to pending.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} skipped: only recipients in sending can be.", messages.WARNING)

    @admin.action(description="Mark stuck-in-sending recipients as delivered (the mail log shows them accepted)")
    def mark_delivered(self, request: HttpRequest, queryset: QuerySet[Recipient]) -> None:
        self._resolve(request, queryset, delivered=True)

    @admin.action(description="Mark stuck-in-sending recipients as failed (not delivered, do not resend)")
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Recipient]) -> None:
        self._resolve(request, queryset, delivered=False)

    def _resolve(self, request: HttpRequest, queryset: QuerySet[Recipient], *, delivered: bool) -> None:
        resolved = services.recipients_resolve(
            recipient_ids=queryset.filter(status=RecipientStatus.SENDING).values_list("pk", flat=True),
            delivered=delivered,
            actor=request.user,
        )
        outcome = "delivered" if delivered else "failed"
        self.message_user(request, f"{resolved} recipient(s) marked {outcome}.", messages.SUCCESS)


@admin.register(EmailEvent)
class EmailEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "occurred_at",
        "type",
        "is_machine",
        "recipient_email",
        "campaign_name",
        "link_url",
        "source",
        "agent",
    ]
    list_filter = ["type", "is_machine", "source", CampaignFilter]
    list_select_related = ["recipient", "campaign", "link"]
    search_fields = ["recipient__email", "provider_event_id"]
    show_full_result_count = False
    paginator = BoundedCountPaginator

    @admin.display(description="recipient")
    def recipient_email(self, event: EmailEvent) -> str:
        return truncated(event.recipient.email, 32) if event.recipient_id else "-"

    @admin.display(description="campaign", ordering="campaign__name")
    def campaign_name(self, event: EmailEvent) -> str:
        return truncated(event.campaign.name, 28)

    @admin.display(description="link")
    def link_url(self, event: EmailEvent) -> str:
        return truncated(event.link.url, 32) if event.link is not None else "-"

    @admin.display(description="user agent")
    def agent(self, event: EmailEvent) -> str:
        return truncated(event.user_agent, 40)


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["email", "organization", "reason", "created_at"]
    list_filter = ["reason", "organization"]
    list_select_related = ["organization"]
    search_fields = ["email"]
    fields = ["organization", "email", "reason"]

    def get_readonly_fields(self, request, obj=None):
        return ["organization", "email", "reason"] if obj else []

    def save_model(self, request, obj: Suppression, form, change: bool) -> None:
        """Through the service, as every other suppression: normalized, the first reason kept.
        (Saved rows are read-only, so this is only ever an addition; the admin logs it.)"""
        services.suppression_add(organization_id=obj.organization_id, email=obj.email, reason=obj.reason)
        stored = Suppression.objects.get(organization_id=obj.organization_id, email=services.normalize_email(obj.email))
        obj.pk, obj.email, obj.reason, obj.created_at = stored.pk, stored.email, stored.reason, stored.created_at


@admin.register(Link)
class LinkAdmin(admin.ModelAdmin):
    list_display = ["url", "campaign", "created_at"]
    list_select_related = ["campaign"]
    search_fields = ["url"]
    readonly_fields = ["campaign", "url", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# The live dashboard and the outgoing webhooks' pages (tracking/admin_live.py), the IMAP reply
# poller's accounts (tracking/admin_inbound.py).
from . import admin_inbound, admin_live  # noqa: E402, F401
