import pytest

from campaigns.management.commands.seed_demo import Command
from campaigns.models import Campaign, Organization
from tracking.models import SequenceStep

pytestmark = pytest.mark.django_db


def test_the_demo_campaigns_get_a_three_step_sequence_once(settings):
    summary = Command().handle(username="admin", password="demo-pass")
    assert "(6 follow-up step(s) added)" in summary
    org = Organization.objects.get(slug="demo")
    assert org.postal_address.startswith("Demo Org, 1 Example Street")
    for campaign in Campaign.objects.filter(organization=org):
        steps = list(SequenceStep.objects.filter(campaign=campaign).values_list("number", "same_thread"))
        assert steps == [(2, True), (3, False)]
    again = Command().handle(username="admin", password="demo-pass")
    assert "(0 follow-up step(s) added)" in again
    assert SequenceStep.objects.count() == 6
