from django.db import migrations


def create_latch_row(apps, schema_editor):
    # The latch row exists from the first migrate on: the queue starts active.
    QueueState = apps.get_model("queue_control", "QueueState")
    QueueState.objects.get_or_create(pk=1, defaults={"state": "active"})


class Migration(migrations.Migration):
    dependencies = [("queue_control", "0001_initial")]

    operations = [migrations.RunPython(create_latch_row, migrations.RunPython.noop)]
