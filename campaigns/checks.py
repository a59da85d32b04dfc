"""The system check of the pipeline's plug-ins (registered in CampaignsConfig.ready()): every job
type has a handler and every channel a launcher and a settler, or Django refuses to start. Without
it a missing launcher showed only when a campaign reached outreach."""

from django.core.checks import Error

from .models import Campaign
from .registry import JOB_HANDLERS, OUTREACH_LAUNCHERS, OUTREACH_SETTLERS
from .states import JobType


def plug_ins_missing() -> list[str]:
    missing = [f"job type {t!r} has no job handler" for t in JobType.values if t not in JOB_HANDLERS]
    for channel in Campaign.Channel.values:
        if channel not in OUTREACH_LAUNCHERS:
            missing.append(f"channel {channel!r} has no outreach launcher")
        if channel not in OUTREACH_SETTLERS:
            missing.append(f"channel {channel!r} has no outreach settler")
    return missing


def plug_ins_check(app_configs=None, **kwargs) -> list[Error]:
    return [
        Error(
            f"The pipeline cannot run: {problem}.",
            hint="Register it in the owning app's AppConfig.ready() with campaigns.registry.register().",
            id="campaigns.E001",
        )
        for problem in plug_ins_missing()
    ]
