from django.apps import AppConfig


class TrackingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tracking"

    def ready(self) -> None:
        # Registers the send_email job handler and the smtp outreach launcher with the pipeline.
        # The live view's and the outgoing webhooks' receivers of campaign and queue history.
        # The deliverability guard's event receiver and its resume checks.
        from . import deliverability, receivers, sending  # noqa: F401
