"""Admin for the pipeline's tables: jobs (read-only) and leads, with the list pieces other admin pages
reuse (the bounded-count paginator, the campaign filter). Imported by campaigns/admin.py."""

import uuid
from functools import cached_property

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from campaigns_project.admin import ReadOnlyAdminMixin, truncated

from .jobs import job_counts
from .models import Campaign, Job, Lead


def job_counts_for(campaign: Campaign) -> dict[str, int]:
    """{status: count} of the campaign's jobs (every status, zeros included), in one query."""
    return job_counts(campaign_id=campaign.pk)


def job_counts_panel(campaign: Campaign) -> str:
    """The campaign page's job panel: counts by status, each linking to the filtered job list."""
    counts = job_counts_for(campaign)
    url = reverse("admin:campaigns_job_changelist")
    cells = format_html_join(
        "",
        '<td><a href="{}?campaign={}&status__exact={}">{}</a>: {}</td>',
        ((url, campaign.pk, status, status, count) for status, count in counts.items()),
    )
    return format_html(
        '<fieldset class="module aligned"><h2>Jobs ({})</h2><table><tr>{}</tr></table></fieldset>',
        sum(counts.values()),
        cells,
    )


class BoundedCountPaginator(Paginator):
    """Counts at most COUNT_LIMIT rows, so a change list over millions of jobs or leads never waits
    for a full COUNT(*); past the limit, filter to narrow the list."""

    COUNT_LIMIT = 10_000
    object_list: QuerySet  # the admin paginates querysets only

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.COUNT_LIMIT].count()


class CampaignFilter(admin.SimpleListFilter):
    """The campaigns that have rows in this list (jobs, leads, recipients, events), newest first,
    at most LIMIT of them; any other campaign can be chosen through the URL, e.g. from the campaign
    page's link. One EXISTS per campaign, on the indexes that lead with the campaign."""

    title = "campaign"
    parameter_name = "campaign"
    LIMIT = 50

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        rows = model_admin.model._default_manager.filter(campaign_id=OuterRef("pk"))
        campaigns = Campaign.objects.filter(Exists(rows)).order_by("-created_at")[: self.LIMIT]
        return [(str(pk), name) for pk, name in campaigns.values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset):
        if not self.value():
            return queryset
        try:
            return queryset.filter(campaign_id=uuid.UUID(self.value()))
        except ValueError:
            return queryset.none()


@admin.register(Job)
class JobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Jobs are the pipeline's record: operators read them; services alone change them."""

    list_display = [
        "id",
        "job_type",
        "status",
        "campaign_name",
        "batch",
        "attempts",
        "error_summary",
        "updated_at",
    ]
    list_filter = ["status", "job_type", CampaignFilter]
    list_select_related = ["campaign"]
    search_fields = ["=id", "=celery_task_id"]
    ordering = ["-id"]
    paginator = BoundedCountPaginator
    show_full_result_count = False
    readonly_fields = [field.name for field in Job._meta.fields]

    @admin.display(description="campaign", ordering="campaign__name")
    def campaign_name(self, job: Job) -> str:
        return truncated(job.campaign.name, 32)

    @admin.display(description="batch")
    def batch(self, job: Job) -> str:
        if job.range_start is None:
            return f"{job.size}" if job.size else "-"
        return f"{job.size} leads (#{job.range_start}-#{job.range_end})"

    @admin.display(description="last error")
    def error_summary(self, job: Job) -> str:
        return truncated(job.last_error, 90)


@admin.register(Lead)
class LeadAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: leads change only through the pipeline and the CSV upload (services that keep
    the phase counters and the history); an edit or delete here mid-pipeline left neither."""

    list_display = ["email", "name", "company_name", "email_status", "source", "campaign_name", "enriched_at"]
    list_filter = ["email_status", "source", CampaignFilter]
    list_select_related = ["campaign"]
    search_fields = ["email", "first_name", "last_name", "company"]
    ordering = ["-id"]
    paginator = BoundedCountPaginator
    show_full_result_count = False
    raw_id_fields = ["campaign"]
    readonly_fields = ["source", "source_id", "enrichment", "enriched_at", "created_at"]

    @admin.display(description="name", ordering="last_name")
    def name(self, lead: Lead) -> str:
        return truncated(" ".join(part for part in (lead.first_name, lead.last_name) if part), 28)

    @admin.display(description="company", ordering="company")
    def company_name(self, lead: Lead) -> str:
        return truncated(lead.company, 28)

    @admin.display(description="campaign", ordering="campaign__name")
    def campaign_name(self, lead: Lead) -> str:
        return truncated(lead.campaign.name, 32)
