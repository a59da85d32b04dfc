"""Pieces of tracking the Campaign admin page shows (the campaigns app includes them)."""

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from campaigns.models import Campaign

from .selectors import campaign_stats, recipients_stuck_in_sending


def campaign_stats_panel(campaign: Campaign) -> SafeString:
    """The campaign's stats as a small HTML table, escaped by the template, for a read-only field
    of the Campaign admin: `def stats(self, obj): return campaign_stats_panel(obj)`."""
    if campaign is None or campaign.pk is None:
        return SafeString("")
    stats = campaign_stats(campaign=campaign)
    html = render_to_string(
        "tracking/admin/stats_panel.html",
        {
            "campaign": campaign,
            "stats": stats,
            # The selectors give fractions (0.25); an operator reads percentages (25.0 %).
            "percent": {name: f"{rate * 100:.1f} %" for name, rate in stats["rates"].items()},
            "stuck": recipients_stuck_in_sending().filter(campaign=campaign).count(),
        },
    )
    return SafeString(html)
