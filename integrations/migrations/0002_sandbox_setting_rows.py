"""One SandboxSetting row per service, so the admin lists every toggle without an "Add" step."""

from django.db import migrations

SERVICES = ("apollo", "instantly", "millionverifier", "openai", "perplexity", "smtp")


def create_rows(apps, schema_editor):
    SandboxSetting = apps.get_model("integrations", "SandboxSetting")
    existing = set(SandboxSetting.objects.values_list("service", flat=True))
    SandboxSetting.objects.bulk_create(
        [SandboxSetting(service=service) for service in SERVICES if service not in existing]
    )


class Migration(migrations.Migration):
    dependencies = [("integrations", "0001_initial")]

    operations = [migrations.RunPython(create_rows, migrations.RunPython.noop)]
