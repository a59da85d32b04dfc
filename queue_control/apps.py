from django.apps import AppConfig


class QueueControlConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "queue_control"

    def ready(self) -> None:
        """The queue control pages of the admin (campaigns_project.admin_site's hook)."""
        from campaigns_project.admin_site import back_office_site

        from .admin import queue_control_urls

        back_office_site().register_pages("queue_control", queue_control_urls)
