"""Where the IMAP reply poller stands in each mailbox (tracking/models_inbound.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0006_auto_reply_event_type"),
    ]

    operations = [
        migrations.CreateModel(
            name='ImapAccountState',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('account_key', models.CharField(max_length=255, unique=True)),
                ('folder', models.CharField(default='INBOX', max_length=255)),
                ('uidvalidity', models.BigIntegerField(blank=True, null=True)),
                ('last_uid', models.BigIntegerField(default=0)),
                ('last_polled_at', models.DateTimeField(blank=True, null=True)),
                ('last_success_at', models.DateTimeField(blank=True, null=True)),
                ('consecutive_failures', models.PositiveIntegerField(default=0)),
                ('last_error', models.TextField(blank=True)),
                ('messages_seen', models.BigIntegerField(default=0)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['account_key'],
            },
        ),
    ]
