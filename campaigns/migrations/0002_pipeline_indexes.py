from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_initial"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="lead",
            index=models.Index(fields=["campaign", "id"], name="lead_campaign_id"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["campaign", "job_type", "status"], name="job_campaign_type_status"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["campaign", "status", "id"], name="job_campaign_status_id"),
        ),
    ]
