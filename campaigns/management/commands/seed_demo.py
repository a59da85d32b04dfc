import os
import secrets

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from rest_framework.authtoken.models import Token

from campaigns.mailboxes import mailbox_create
from campaigns.models import Campaign, Mailbox, Membership, Organization
from campaigns.services import campaign_create

DEMO_POSTAL_ADDRESS = "Demo Org, 1 Example Street, 10115 Berlin, Germany"
# The demo sequence after step 1 (the campaign's own message): (delay in business days, same
# thread, subject, body). A blank subject in the same thread is "Re: <the previous subject>".
DEMO_FOLLOW_UPS = [
    (2, True, "", "Hi {{ first_name }}, just bumping this up in case it got buried. Worth a quick chat?\n"),
    (
        4,
        False,
        "Closing the loop, {{ first_name }}",
        "Hi {{ first_name }},\n\nI will not write again about this. If timing is better later, "
        "https://example.com/book is always open.\n",
    ),
]

DEMO_CAMPAIGNS = [
    ("Berlin CTOs", "https://app.apollo.io/#/people?personTitles[]=cto&personLocations[]=Berlin"),
    ("Paris founders", "https://app.apollo.io/#/people?personTitles[]=founder&personLocations[]=Paris"),
    ("London VPs of Sales", "https://app.apollo.io/#/people?personTitles[]=vp%20sales&personLocations[]=London"),
]


class Command(BaseCommand):
    help = (
        "Create (or re-create, after reset_state) the demo organization, its admin user and a few draft "
        "campaigns. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument(
            "--password",
            default="",
            help="Set this password. Default: DEMO_ADMIN_PASSWORD (make run keeps one per checkout); "
            "without either, a new user gets a random one and an existing user keeps theirs.",
        )

    @transaction.atomic
    def handle(self, *args, username: str, password: str, **options) -> str:
        password = password or os.environ.get("DEMO_ADMIN_PASSWORD", "")
        user, created_user = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        if not password and created_user:
            password = secrets.token_urlsafe(9)
        user.is_staff = user.is_superuser = True
        if password:
            user.set_password(password)
        user.save()
        token, _ = Token.objects.get_or_create(user=user)
        org, _ = Organization.objects.get_or_create(slug="demo", defaults={"name": "Demo Org"})
        if not org.postal_address:
            org.postal_address = DEMO_POSTAL_ADDRESS  # every message's footer carries it
            org.save(update_fields=["postal_address"])
        Membership.objects.get_or_create(user=user, organization=org, defaults={"role": Membership.Role.OWNER})
        created = 0
        for name, url in DEMO_CAMPAIGNS:
            if not Campaign.objects.alive().filter(organization=org, name=name).exists():
                campaign_create(
                    organization=org,
                    actor=user,
                    name=name,
                    search_url=url,
                    lead_count=20,
                    from_name="Demo Sender",
                    from_email="sender@example.com",
                    subject_template="Quick question, {{ first_name }}",
                    body_template=(
                        "Hi {{ first_name }},\n\n{{ personalization }}\n\n"
                        "Would a 15 minute call next week make sense? https://example.com/book\n"
                    ),
                )
                created += 1
        mailboxes = self.sandbox_mailboxes(org)
        steps = sum(self._follow_ups(campaign) for campaign in Campaign.objects.alive().filter(organization=org))
        return (
            f"Demo organization '{org.slug}' with {created} new campaign(s) ({steps} follow-up step(s) added).\n"
            f"Sandbox mailboxes of '{DEMO_CAMPAIGNS[0][0]}': {mailboxes}\n"
            f"Admin user: {username}  password: {password or '(unchanged)'}\n"
            f"API token: {token.key}"
        )

    def sandbox_mailboxes(self, org: Organization) -> str:
        """Two sender mailboxes for the first demo campaign, pointing at the embedded SMTP sink
        `make run` starts (SMTP_SINK_PORT), with small daily caps and a ramp-up to show them."""
        port = int(os.environ.get("SMTP_SINK_PORT") or 2525)
        campaign = Campaign.objects.alive().filter(organization=org, name=DEMO_CAMPAIGNS[0][0]).first()
        names = []
        for number, (name, cap) in enumerate([("sandbox-1", 40), ("sandbox-2", 25)], start=1):
            mailbox = Mailbox.objects.filter(organization=org, name=name).first()
            if mailbox is None:
                mailbox = mailbox_create(
                    organization=org,
                    name=name,
                    from_email=f"sandbox{number}@demo.example",
                    from_name=f"Demo Sender {number}",
                    smtp_host="127.0.0.1",
                    smtp_port=port,
                    smtp_security=Mailbox.SmtpSecurity.NONE,
                    daily_cap=cap,
                    ramp_start_cap=10,
                    ramp_daily_increase=10,
                    campaigns=[campaign] if campaign else [],
                )
            elif mailbox.smtp_port != port:  # the sink's port of this checkout
                Mailbox.objects.filter(pk=mailbox.pk).update(smtp_port=port)
            if campaign is not None:
                mailbox.campaigns.add(campaign)
            names.append(f"{name} (127.0.0.1:{port})")
        return ", ".join(names)

    def _follow_ups(self, campaign: Campaign) -> int:
        """The demo sequence's steps 2 and 3, unless the campaign has steps already. By the app
        registry, not an import: the campaigns app stays below tracking."""
        step_model = apps.get_model("tracking", "SequenceStep")
        if step_model.objects.filter(campaign=campaign).exists():
            return 0
        for number, (delay, same_thread, subject, body) in enumerate(DEMO_FOLLOW_UPS, start=2):
            step = step_model(
                campaign=campaign,
                number=number,
                delay_days=delay,
                business_days=True,
                same_thread=same_thread,
                subject_template=subject,
                body_template=body,
            )
            step.full_clean()
            step.save()
        return len(DEMO_FOLLOW_UPS)
