"""The Celery app. All task policy (acks, limits, serializers) lives in Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns_project.settings")

app = Celery("campaigns_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
