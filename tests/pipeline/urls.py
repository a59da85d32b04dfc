"""The project's URLs plus the pipeline's admin pages, for these tests only: the lead wires
admin_jobs_leads into campaigns/admin.py."""

from django.contrib import admin
from django.urls import path

import campaigns.admin_jobs_leads  # noqa: F401  (registers JobAdmin and LeadAdmin)
from campaigns_project.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("admin/", admin.site.urls),
    *project_urlpatterns,
]
