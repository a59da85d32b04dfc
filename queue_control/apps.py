from django.apps import AppConfig


class QueueControlConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "queue_control"

    def ready(self) -> None:
        """The queue control pages of the admin (campaigns_project.admin_site's hook)."""
        from django.contrib import admin

        from .admin import queue_control_urls

        admin.site.register_pages("queue_control", queue_control_urls)
