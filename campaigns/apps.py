from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"

    def ready(self) -> None:
        """Every plug-in of this app, wired by name: the pipeline's job handlers and the Instantly
        channel, the queue cascade (pausing's signal receivers) and the status page's counts, the
        campaign page's job panel, and the system check that every job type and channel is served."""
        from django.core import checks

        from campaigns_project.admin_site import back_office_site
        from queue_control.counts import queue_counts_register

        from . import handlers, pausing, secrets  # noqa: F401  (secrets: the mailbox key's deploy check)
        from .admin_jobs_leads import job_counts_panel
        from .admin_mailboxes import mailboxes_panel
        from .checks import plug_ins_check
        from .registry import register
        from .states import JobType

        register(
            job_handlers={
                JobType.FETCH_LEADS: handlers.fetch_leads,
                JobType.VERIFY_EMAIL: handlers.verify_emails,
                JobType.ENRICH_LEAD: handlers.enrich_leads,
                JobType.PUSH_INSTANTLY: handlers.push_instantly,
            },
            outreach_launchers={"instantly": handlers.instantly_outreach_launch},
            outreach_settlers={"instantly": handlers.instantly_outreach_settle},
        )
        queue_counts_register("campaigns", pausing.queue_counts)
        site = back_office_site()
        site.register_campaign_panel("jobs", job_counts_panel)
        site.register_campaign_panel("mailboxes", mailboxes_panel)
        checks.register(plug_ins_check)
