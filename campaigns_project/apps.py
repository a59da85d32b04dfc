from django.apps import AppConfig
from django.db.backends.signals import connection_created


class ProjectConfig(AppConfig):
    """The project package as an app: it owns no models, only process-wide hooks."""

    name = "campaigns_project"
    verbose_name = "Campaign back-office"

    def ready(self) -> None:
        from .datetimes import install_lenient_loader

        connection_created.connect(install_lenient_loader, dispatch_uid="campaigns_project.lenient_timestamps")
