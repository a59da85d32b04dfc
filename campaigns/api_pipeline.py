"""Pipeline endpoints of a campaign: details, results (leads, JSON or CSV), jobs, cleanup, CSV upload.

Every view starts from campaign_get_for_user (another organization's campaign is a 404) and
changes go through user_can_operate (viewers read only). Included by campaigns/urls.py.
"""

import csv

import django_filters
from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import re_path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ParseError, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from campaigns_project import serializers as strict
from campaigns_project.filters import FilterSet

from .api import CampaignSerializer
from .csv_import import EMAIL_COLUMN, OPTIONAL_COLUMNS, CsvImportError, leads_import_csv
from .jobs import job_counts, jobs_cleanup
from .models import Campaign, Job, Lead
from .pipeline import campaign_lead_stats
from .selectors import NOT_SYNCED_YET, campaign_get_for_user, instantly_analytics_get, user_can_operate
from .states import JobStatus, JobType

# The export's first columns are the upload's, so an exported file can be uploaded again.
CSV_FIELDS = (EMAIL_COLUMN, *OPTIONAL_COLUMNS, "email_status", "source", "enriched_at")


class CampaignScopedMixin:
    """The campaign named in the URL, looked up once per request within the user's organizations."""

    _campaign: Campaign | None = None

    def get_campaign(self) -> Campaign:
        if self._campaign is None:
            self._campaign = campaign_get_for_user(user=self.request.user, campaign_id=self.kwargs["campaign_id"])
        return self._campaign

    def get_operable_campaign(self) -> Campaign:
        campaign = self.get_campaign()
        if not user_can_operate(user=self.request.user, organization_id=campaign.organization_id):
            raise PermissionDenied("Your role in this organization does not allow changes.")
        return campaign


# --- serializers -------------------------------------------------------------------------------


class LeadSerializer(serializers.ModelSerializer):
    class Meta:
        model = Lead
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "title",
            "company",
            "company_domain",
            "linkedin_url",
            "phone",
            "source",
            "source_id",
            "email_status",
            "enrichment",
            "enriched_at",
            "created_at",
        ]


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = [
            "id",
            "job_type",
            "status",
            "attempts",
            "last_error",
            "result",
            "range_start",
            "range_end",
            "size",
            "run_after",
            "celery_task_id",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]


class LeadStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    with_email = serializers.IntegerField()
    enriched = serializers.IntegerField()
    sendable = serializers.IntegerField(help_text="valid or catch_all: the leads outreach mails")
    by_email_status = serializers.DictField(child=serializers.IntegerField())
    errors = serializers.IntegerField(help_text="failed jobs of this campaign")


class CampaignDetailsSerializer(serializers.Serializer):
    campaign = CampaignSerializer()
    leads = LeadStatsSerializer()
    jobs = serializers.DictField(child=serializers.IntegerField(), help_text="job count per status")
    analytics = serializers.DictField(allow_null=True, help_text="Instantly's figures, when pushed there")
    analytics_synced_at = serializers.DateTimeField(allow_null=True)
    analytics_error = serializers.CharField(allow_null=True)


class CleanupRequestSerializer(strict.Serializer):
    days = serializers.IntegerField(min_value=0, max_value=36_500, default=settings.JOB_RETENTION_DAYS)
    dry_run = serializers.BooleanField(default=False)


class CleanupResultSerializer(serializers.Serializer):
    older_than_days = serializers.IntegerField()
    cutoff = serializers.DateTimeField()
    campaign_id = serializers.CharField(allow_null=True)
    dry_run = serializers.BooleanField()
    matched = serializers.IntegerField()
    deleted = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())


class UploadRequestSerializer(strict.Serializer):
    file = serializers.FileField(
        help_text="CSV with a header: email, then optionally first_name, last_name, "
        "title, company, company_domain, linkedin_url, phone"
    )


class UploadResultSerializer(serializers.Serializer):
    file_name = serializers.CharField()
    total_records = serializers.IntegerField()
    imported = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    duplicate_lines = serializers.ListField(child=serializers.IntegerField())
    ignored_columns = serializers.ListField(child=serializers.CharField())


class RowErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    field = serializers.CharField()
    message = serializers.CharField()


class UploadErrorSerializer(serializers.Serializer):
    """Every 400 of the upload has this shape, whatever refused it (the form, the file, a row)."""

    file = serializers.ListField(child=serializers.CharField(), help_text="Why the file was refused, in words.")
    errors = RowErrorSerializer(many=True, help_text="The bad rows (the first 100); empty when the file itself is bad.")
    error_count = serializers.IntegerField(help_text="How many problems in all.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Refused form fields other than `file`, each with its messages.",
    )


def _upload_refused(messages: list[str], *, errors=(), error_count: int = 0, fields: dict | None = None) -> Response:
    body = {"file": [str(m) for m in messages], "errors": list(errors), "error_count": error_count or len(messages)}
    if fields:
        body["fields"] = {name: [str(m) for m in problems] for name, problems in fields.items()}
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


def _messages(detail) -> list[str]:
    """Plain strings out of a DRF error detail (a list, a dict or one message)."""
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]


# --- details -----------------------------------------------------------------------------------


class CampaignDetailsView(CampaignScopedMixin, APIView):
    """The campaign, its lead figures (by email status, enriched, errors), its job counts, and
    Instantly's figures when it was pushed there, as the periodic sync stored them
    (`analytics_synced_at`). If the last sync failed, `analytics_error` says why and `analytics`
    holds the last figures read."""

    @extend_schema(responses=CampaignDetailsSerializer, summary="A campaign with its lead, job and Instantly figures")
    def get(self, request, campaign_id):
        campaign = self.get_campaign()
        jobs = job_counts(campaign_id=campaign.pk)
        data = {
            "campaign": CampaignSerializer(campaign, context={"request": request}).data,
            "leads": {**campaign_lead_stats(campaign_id=campaign.pk), "errors": jobs[JobStatus.FAILED]},
            "jobs": jobs,
            **_analytics(campaign),
        }
        return Response(data)


def _analytics(campaign: Campaign) -> dict:
    """Instantly's figures as the periodic sync last stored them, when, and why the last sync
    failed if it did. Never a call to Instantly: a GET must not reach a provider (the breaker)."""
    if not campaign.instantly_campaign_id:
        return {"analytics": None, "analytics_synced_at": None, "analytics_error": None}
    stored = instantly_analytics_get(campaign=campaign)
    if stored is None:
        return {"analytics": None, "analytics_synced_at": None, "analytics_error": NOT_SYNCED_YET}
    return {
        "analytics": stored.figures,
        "analytics_synced_at": stored.synced_at,
        "analytics_error": f"Instantly analytics are unavailable: {stored.error}" if stored.error else None,
    }


# --- results (leads) ---------------------------------------------------------------------------


class LeadFilter(FilterSet):
    email_status = django_filters.MultipleChoiceFilter(choices=Lead.EmailStatus.choices)
    source = django_filters.CharFilter()

    class Meta:
        model = Lead
        fields = ["email_status", "source"]


class LeadsCSVRenderer(BaseRenderer):
    """Selected by ?format=csv or /results.csv. The view streams the rows itself; this renders only
    error answers (404, 403) that content negotiation sends here."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        detail = data.get("detail", "") if isinstance(data, dict) else data
        return f"error\r\n{detail}\r\n".encode()


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_cell(value) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ (a formula) gets a leading
    quote, unless it is a plain number such as a phone number."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not text.lstrip("+-").replace(" ", "").isdigit():
        return "'" + text
    return text


@extend_schema(
    parameters=[
        OpenApiParameter("format", str, enum=["json", "csv"], description="csv streams every matching lead as CSV"),
    ],
    responses={
        (200, "application/json"): LeadSerializer(many=True),
        (200, "text/csv"): OpenApiTypes.STR,
    },
    summary="A campaign's leads (results), paginated, or all of them as CSV",
)
class CampaignResultsView(CampaignScopedMixin, generics.ListAPIView):
    """The campaign's leads, filtered by email_status or source and searched by email, names or
    company. `?format=csv` (or `/results.csv`) streams every matching lead as CSV instead."""

    serializer_class = LeadSerializer
    filterset_class = LeadFilter
    search_fields = ["email", "first_name", "last_name", "company"]
    ordering_fields = ["id", "email", "email_status", "company", "created_at"]
    ordering = ["id"]
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, LeadsCSVRenderer]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Lead.objects.none()
        return Lead.objects.filter(campaign=self.get_campaign())

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        if request.accepted_renderer.format == "csv":
            return self._stream_csv(queryset)
        return super().list(request, *args, **kwargs)

    def _stream_csv(self, queryset) -> StreamingHttpResponse:
        writer = csv.writer(_Echo())

        def lines():
            yield writer.writerow(CSV_FIELDS)
            for row in queryset.values_list(*CSV_FIELDS).iterator(chunk_size=2000):
                yield writer.writerow([_csv_cell(value) for value in row])

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="campaign-{self.get_campaign().pk}-leads.csv"'
        return response


@extend_schema_view(
    get=extend_schema(
        operation_id="results_csv",
        parameters=[OpenApiParameter("format", exclude=True)],
        responses={(200, "text/csv"): OpenApiTypes.STR},
        summary="A campaign's leads as CSV (same filters as results)",
    )
)
class CampaignResultsCSVView(CampaignResultsView):
    """Every matching lead of the campaign as a streamed CSV file."""


# --- jobs --------------------------------------------------------------------------------------


class JobFilter(FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    job_type = django_filters.MultipleChoiceFilter(choices=JobType.choices)

    class Meta:
        model = Job
        fields = ["status", "job_type"]


@extend_schema(summary="A campaign's jobs, paginated")
class CampaignJobsView(CampaignScopedMixin, generics.ListAPIView):
    """The campaign's jobs, filtered by status or job_type."""

    serializer_class = JobSerializer
    filterset_class = JobFilter
    search_fields: list[str] = []
    ordering_fields = ["id", "status", "job_type", "updated_at"]
    ordering = ["id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        return Job.objects.filter(campaign=self.get_campaign())


# --- cleanup -----------------------------------------------------------------------------------


class CampaignJobsCleanupView(CampaignScopedMixin, APIView):
    """Delete the campaign's final jobs (completed, failed, cancelled) older than `days` days
    (default JOB_RETENTION_DAYS); pending, processing and paused jobs are never deleted."""

    @extend_schema(
        request=CleanupRequestSerializer,
        responses={200: CleanupResultSerializer},
        summary="Delete this campaign's final jobs older than `days` days (never an active one)",
    )
    def post(self, request, campaign_id):
        campaign = self.get_operable_campaign()
        body = CleanupRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = jobs_cleanup(
            older_than_days=body.validated_data["days"],
            campaign_id=campaign.pk,
            dry_run=body.validated_data["dry_run"],
        )
        return Response(result)


# --- CSV upload --------------------------------------------------------------------------------


class CampaignLeadsUploadView(CampaignScopedMixin, APIView):
    """Import the campaign's leads from a CSV file (field `file`): a header with an email column
    and optionally first_name, last_name, title, company, company_domain, linkedin_url, phone.
    All or nothing: any bad row refuses the whole file, listing each problem with its line.
    Duplicate addresses are skipped and reported. Draft campaigns only; replaces an earlier upload."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": UploadRequestSerializer},
        responses={
            201: UploadResultSerializer,
            400: UploadErrorSerializer,
            409: OpenApiResponse(description="The campaign is not a draft."),
        },
        summary="Upload the campaign's leads as CSV (draft campaigns only; replaces an earlier upload)",
    )
    def post(self, request, campaign_id):
        campaign = self.get_operable_campaign()
        try:
            body = UploadRequestSerializer(data=request.data)
            body.is_valid(raise_exception=True)
        except ParseError as exc:
            return _upload_refused([exc.detail])
        except ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"file": exc.detail}
            others = {name: _messages(value) for name, value in detail.items() if name != "file"}
            file_messages = _messages(detail.get("file", [])) or ["The upload was refused; see `fields`."]
            return _upload_refused(file_messages, fields=others, error_count=sum(map(len, others.values())) + 1)
        upload = body.validated_data["file"]
        upload.seek(0)
        try:
            result = leads_import_csv(
                campaign_id=campaign.pk,
                file=upload.file,
                # A client names the file: no NUL or control character reaches the database.
                file_name="".join(ch for ch in (upload.name or "") if ch.isprintable()),
                actor=request.user,
            )
        except CsvImportError as exc:
            return _upload_refused([exc.message], errors=exc.errors, error_count=exc.error_count or 1)
        return Response(result, status=status.HTTP_201_CREATED)


CAMPAIGN = r"^campaigns/(?P<campaign_id>[^/]+)"
urlpatterns = [
    re_path(rf"{CAMPAIGN}/details/?$", CampaignDetailsView.as_view(), name="campaign-details"),
    re_path(
        rf"{CAMPAIGN}/results\.csv$", CampaignResultsCSVView.as_view(), {"format": "csv"}, name="campaign-results-csv"
    ),
    re_path(rf"{CAMPAIGN}/results/?$", CampaignResultsView.as_view(), name="campaign-results"),
    re_path(rf"{CAMPAIGN}/jobs/?$", CampaignJobsView.as_view(), name="campaign-jobs"),
    re_path(rf"{CAMPAIGN}/cleanup/?$", CampaignJobsCleanupView.as_view(), name="campaign-jobs-cleanup"),
    re_path(rf"{CAMPAIGN}/leads/upload/?$", CampaignLeadsUploadView.as_view(), name="campaign-leads-upload"),
]
