"""The project's URLs plus the pipeline endpoints and admin pages, for these tests only: the lead
wires campaigns.api_pipeline into campaigns/urls.py and admin_pipeline into campaigns/admin.py."""

from django.contrib import admin
from django.urls import include, path

import campaigns.admin_pipeline  # noqa: F401  (registers JobAdmin and LeadAdmin)
from campaigns import api_pipeline
from campaigns_project.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_pipeline.urlpatterns)),
    *project_urlpatterns,
]
