"""`auto_reply` joins the email event types (issue 15: automatic replies are told apart from human
ones), and `email.auto_replied` the outgoing webhook types that report it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0005_live_periodic_tasks"),
    ]

    operations = [
        migrations.AlterField(
            model_name='emailevent',
            name='type',
            field=models.CharField(choices=[('delivered', 'Delivered'), ('open', 'Open'), ('click', 'Click'), ('bounce', 'Bounce'), ('reply', 'Reply'), ('auto_reply', 'Auto Reply'), ('forward', 'Forward'), ('unsubscribe', 'Unsubscribe'), ('complain', 'Complain')], max_length=16),
        ),
        migrations.AlterField(
            model_name='webhookevent',
            name='type',
            field=models.CharField(choices=[('campaign.status_changed', 'Campaign Status Changed'), ('campaign.phase_changed', 'Campaign Phase Changed'), ('queue.paused', 'Queue Paused'), ('queue.resumed', 'Queue Resumed'), ('breaker.opened', 'Breaker Opened'), ('breaker.reset', 'Breaker Reset'), ('email.sent', 'Email Sent'), ('email.opened', 'Email Opened'), ('email.clicked', 'Email Clicked'), ('email.replied', 'Email Replied'), ('email.auto_replied', 'Email Auto Replied'), ('email.bounced', 'Email Bounced'), ('email.unsubscribed', 'Email Unsubscribed'), ('email.complained', 'Email Complained'), ('webhook.test', 'Test')], max_length=48),
        ),
    ]
