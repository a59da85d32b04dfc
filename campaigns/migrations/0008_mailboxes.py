"""Sender mailboxes of an organization (issue 15, point 4): campaigns/models_mailboxes.py."""

import datetime

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0007_instantly_analytics_not_a_job"),
    ]

    operations = [
        migrations.CreateModel(
            name='Mailbox',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=120)),
                ('from_email', models.EmailField(max_length=254)),
                ('from_name', models.CharField(blank=True, max_length=255)),
                ('smtp_host', models.CharField(max_length=255)),
                ('smtp_port', models.PositiveIntegerField(default=587, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(65535)])),
                ('smtp_username', models.CharField(blank=True, max_length=255)),
                ('smtp_password_encrypted', models.TextField(blank=True, editable=False)),
                ('smtp_security', models.CharField(choices=[('none', 'None'), ('starttls', 'Starttls'), ('tls', 'Tls')], default='starttls', max_length=16)),
                ('imap_host', models.CharField(blank=True, max_length=255)),
                ('imap_port', models.PositiveIntegerField(default=993, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(65535)])),
                ('imap_username', models.CharField(blank=True, max_length=255)),
                ('imap_password_encrypted', models.TextField(blank=True, editable=False)),
                ('imap_ssl', models.BooleanField(default=True)),
                ('daily_cap', models.PositiveIntegerField(default=50, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(100000)])),
                ('ramp_start_cap', models.PositiveIntegerField(default=0)),
                ('ramp_daily_increase', models.PositiveIntegerField(default=0)),
                ('ramp_started_on', models.DateField(default=datetime.date.today)),
                ('min_gap_seconds', models.PositiveIntegerField(default=0, validators=[django.core.validators.MaxValueValidator(86400)])),
                ('active', models.BooleanField(default=True)),
                ('pause_kind', models.CharField(blank=True, choices=[('breaker', 'Breaker'), ('deliverability', 'Deliverability')], max_length=16)),
                ('pause_figure', models.CharField(blank=True, max_length=255)),
                ('paused_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('campaigns', models.ManyToManyField(blank=True, related_name='mailboxes', to='campaigns.campaign')),
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='mailboxes', to='campaigns.organization')),
            ],
            options={
                'verbose_name_plural': 'mailboxes',
                'ordering': ['organization', 'name', 'id'],
            },
        ),
        migrations.AddConstraint(
            model_name='mailbox',
            constraint=models.UniqueConstraint(fields=('organization', 'name'), name='mailbox_org_name_unique'),
        ),
    ]
