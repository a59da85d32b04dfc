"""The campaigns app's API routes: (prefix, ViewSet, basename) registered on the one API router
(campaigns_project/api_urls.py). A campaign's sub-resources are ViewSets under
`campaigns/(?P<campaign_pk>[^/.]+)/<resource>`; its verbs are actions of CampaignViewSet (and the
transition, CampaignTransitionViewSet)."""

from rest_framework.viewsets import ViewSetMixin

from . import api, api_jobs, api_leads, api_mailboxes, api_organizations, api_phases

CAMPAIGN = r"campaigns/(?P<campaign_pk>[^/.]+)"

ROUTES: list[tuple[str, type[ViewSetMixin], str]] = [
    ("campaigns", api.CampaignViewSet, "campaign"),
    ("campaigns", api_phases.CampaignTransitionViewSet, "campaign-transition"),
    (f"{CAMPAIGN}/phases", api_phases.CampaignPhasesViewSet, "campaign-phases"),
    (f"{CAMPAIGN}/results", api_leads.CampaignResultsViewSet, "campaign-results"),
    (f"{CAMPAIGN}/leads/upload", api_leads.CampaignLeadsUploadViewSet, "campaign-leads-upload"),
    (f"{CAMPAIGN}/jobs", api_jobs.CampaignJobsViewSet, "campaign-jobs"),
    (f"{CAMPAIGN}/cleanup", api_jobs.CampaignJobsCleanupViewSet, "campaign-jobs-cleanup"),
    ("mailboxes", api_mailboxes.MailboxViewSet, "mailbox"),
    ("organizations", api_organizations.OrganizationViewSet, "organization"),
]
