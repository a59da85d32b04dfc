from django.apps import AppConfig


class TrackingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tracking"

    def ready(self) -> None:
        # Registers the send_email job handler and the smtp outreach launcher with the pipeline.
        from . import sending  # noqa: F401
