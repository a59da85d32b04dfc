"""Admin page of the IMAP reply poller: where it stands in each mailbox and which mailboxes are
failing (a refused login, an unreachable server). Read-only: the poller writes these rows.
Imported by tracking/admin.py."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from campaigns_project.admin import ReadOnlyAdminMixin, truncated

from .models import ImapAccountState


class FailingFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "failing"

    def lookups(self, request, model_admin):
        return [("yes", "Failing"), ("no", "Healthy")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(consecutive_failures__gt=0)
        if self.value() == "no":
            return queryset.filter(consecutive_failures=0)
        return queryset


@admin.register(ImapAccountState)
class ImapAccountStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "account_key",
        "folder",
        "last_uid",
        "messages_seen",
        "last_success_at",
        "consecutive_failures",
        "error",
    ]
    list_filter = [FailingFilter]
    search_fields = ["account_key"]

    @admin.display(description="last error")
    def error(self, obj: ImapAccountState) -> str:
        return truncated(obj.last_error, 80)
