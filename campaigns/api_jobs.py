"""A campaign's jobs: the list and the cleanup of its final ones. ViewSets under the router prefix
campaigns/(?P<campaign_pk>[^/.]+)/ (campaigns/urls.py), on
campaigns.api_base.CampaignResourceViewSet (another organization's campaign is a 404; the cleanup
needs an owner or operator)."""

import django_filters
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.response import Response

from campaigns_project import serializers as strict
from campaigns_project.filters import FilterSet
from campaigns_project.pagination import HasNextPagination

from .api_base import CampaignResourceViewSet
from .jobs import jobs_cleanup
from .models import Job
from .states import JobStatus, JobType


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


# --- jobs --------------------------------------------------------------------------------------


class JobFilter(FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    job_type = django_filters.MultipleChoiceFilter(choices=JobType.choices)

    class Meta:
        model = Job
        fields = ["status", "job_type"]


@extend_schema(summary="A campaign's jobs, paginated")
class CampaignJobsViewSet(mixins.ListModelMixin, CampaignResourceViewSet):
    """The campaign's jobs, filtered by status or job_type."""

    serializer_class = JobSerializer
    filterset_class = JobFilter
    search_fields: list[str] = []
    ordering_fields = ["id", "status", "job_type", "updated_at"]
    ordering = ["id"]
    pagination_class = HasNextPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        return Job.objects.filter(campaign=self.get_campaign())


# --- cleanup -----------------------------------------------------------------------------------


class CampaignJobsCleanupViewSet(CampaignResourceViewSet):
    """Delete the campaign's final jobs (completed, failed, cancelled) older than `days` days
    (default JOB_RETENTION_DAYS); pending, processing and paused jobs are never deleted."""

    @extend_schema(
        request=CleanupRequestSerializer,
        responses={200: CleanupResultSerializer},
        summary="Delete this campaign's final jobs older than `days` days (never an active one)",
    )
    def create(self, request, campaign_pk=None):
        campaign = self.get_campaign()
        body = CleanupRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = jobs_cleanup(
            older_than_days=body.validated_data["days"],
            campaign_id=campaign.pk,
            dry_run=body.validated_data["dry_run"],
        )
        return Response(result)
