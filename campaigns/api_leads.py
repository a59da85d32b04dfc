"""A campaign's leads: the results list (JSON, or every matching lead streamed as CSV) and the
CSV upload. ViewSets under the router prefix campaigns/(?P<campaign_pk>[^/.]+)/ (campaigns/urls.py),
on campaigns.api_base.CampaignResourceViewSet (another organization's campaign is a 404; the
upload needs an owner or operator)."""

import csv
from typing import cast

import django_filters
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings

from campaigns_project import serializers as strict
from campaigns_project.filters import FilterSet
from campaigns_project.pagination import HasNextPagination

from .api_base import CampaignResourceViewSet
from .csv_import import EMAIL_COLUMN, OPTIONAL_COLUMNS, CsvImportError, leads_import_csv
from .models import Lead

# The export's first columns are the upload's, so an exported file can be uploaded again.
CSV_FIELDS = (EMAIL_COLUMN, *OPTIONAL_COLUMNS, "email_status", "source", "enriched_at")


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
    errors = RowErrorSerializer(  # type: ignore[assignment]  # a field, not Serializer.errors
        many=True, help_text="The bad rows (the first 100); empty when the file itself is bad."
    )
    error_count = serializers.IntegerField(help_text="How many problems in all.")
    fields = serializers.DictField(  # type: ignore[assignment]  # a field, not Serializer.fields
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
class CampaignResultsViewSet(mixins.ListModelMixin, CampaignResourceViewSet):
    """The campaign's leads, filtered by email_status or source and searched by email, names or
    company. `?format=csv` (or `/results.csv`, the router's format suffix) streams every matching
    lead as CSV instead."""

    serializer_class = LeadSerializer
    filterset_class = LeadFilter
    search_fields = ["email", "first_name", "last_name", "company"]
    ordering_fields = ["id", "email", "email_status", "company", "created_at"]
    ordering = ["id"]
    pagination_class = HasNextPagination
    # cast: api_settings imports the classes its settings name (the stubs type the names).
    renderer_classes = [*cast(list[type[BaseRenderer]], api_settings.DEFAULT_RENDERER_CLASSES), LeadsCSVRenderer]

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


# --- CSV upload --------------------------------------------------------------------------------


class CampaignLeadsUploadViewSet(CampaignResourceViewSet):
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
    def create(self, request, campaign_pk=None):
        campaign = self.get_campaign()
        try:
            body = UploadRequestSerializer(data=request.data)
            body.is_valid(raise_exception=True)
        except ParseError as exc:
            return _upload_refused([str(exc.detail)])
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
