from django.apps import AppConfig


class TrackingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tracking"

    def ready(self) -> None:
        """Every plug-in of this app, wired by name: the SMTP channel's send job handler,
        recoverer, launcher and settler; the campaign page's stats panel and the live dashboard's
        admin pages. (`receivers` connects the live view's and the outgoing webhooks' receivers of
        campaign and queue history.)"""
        from campaigns.mailboxes import MAILBOX_HANDOFFS, MAILBOX_RESUME_GUARDS
        from campaigns.registry import register
        from campaigns.services import RESUME_GUARDS
        from campaigns.states import JobType, MailboxPauseKind, PauseKind
        from campaigns_project.admin_site import back_office_site

        from . import deliverability, mailboxes, receivers, sending  # noqa: F401  (deliverability: its event receiver)
        from .admin_dashboard import dashboard_urls
        from .admin_panels import campaign_stats_panel
        from .admin_sequences import campaign_sequence_panel

        register(
            job_handlers={JobType.SEND_EMAIL: sending.send_email_job},
            job_recoverers={JobType.SEND_EMAIL: sending.send_job_recover},
            outreach_launchers={"smtp": sending.smtp_outreach_launch},
            outreach_settlers={"smtp": sending.smtp_outreach_settle},
        )
        # A deliverability pause resumes only below the threshold or with the operator's acknowledgement.
        RESUME_GUARDS.setdefault(PauseKind.DELIVERABILITY, []).append(deliverability.campaign_resume_guard)
        MAILBOX_RESUME_GUARDS.setdefault(MailboxPauseKind.DELIVERABILITY, []).append(
            deliverability.mailbox_resume_guard
        )
        # A paused mailbox's unsent recipients move to the campaign's other mailboxes.
        if mailboxes.recipients_hand_off not in MAILBOX_HANDOFFS:
            MAILBOX_HANDOFFS.append(mailboxes.recipients_hand_off)
        site = back_office_site()
        site.register_campaign_panel("stats", campaign_stats_panel)
        site.register_campaign_panel("sequence", campaign_sequence_panel)
        site.register_pages("live_dashboard", dashboard_urls)
