"""The services are listed once (settings.SERVICES, from settings.PROVIDERS plus smtp); every
other table of them is keyed by that list, and the migration's frozen copy matches it."""

import importlib

from django.conf import settings

from integrations.models import SandboxSetting
from integrations.providers import REAL, SANDBOXES


def test_every_table_of_services_is_keyed_by_the_one_list(db):
    assert settings.SERVICES == ("apollo", "instantly", "millionverifier", "openai", "perplexity", "smtp")
    assert set(settings.SERVICES) - {"smtp"} == set(settings.PROVIDERS) == set(REAL) == set(SANDBOXES)
    assert set(settings.BREAKERS) == set(settings.SERVICES)
    assert set(settings.PROVIDER_CONCURRENCY) <= set(settings.SERVICES)
    frozen = importlib.import_module("integrations.migrations.0002_sandbox_setting_rows").SERVICES
    assert tuple(frozen) == settings.SERVICES
    assert set(SandboxSetting.objects.values_list("service", flat=True)) <= set(settings.SERVICES)
