"""`/api/v1/organizations/`: members read their own organizations with their role; owners (and
staff) change the name and the postal address every message carries; an smtp campaign does not
start without that address."""

import pytest
from rest_framework.test import APIClient

from campaigns.models import Organization
from tests.factories import CampaignFactory, MembershipFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/organizations/"


def test_a_member_lists_only_their_organizations_with_their_own_role(alice_client, viewer_client, bob, charlie):
    MembershipFactory(user=bob, organization=Organization.objects.get(slug="globex"), role="viewer")
    answer = alice_client.get(URL).json()
    assert [(o["slug"], o["role"], o["postal_address"]) for o in answer["results"]] == [
        ("acme", "owner", "1 Test Street, 10115 Berlin, Germany")
    ]
    assert [o["role"] for o in viewer_client.get(URL).json()["results"]] == ["viewer"]
    bob_client = APIClient()
    bob_client.force_authenticate(bob)
    assert [(o["slug"], o["role"]) for o in bob_client.get(URL).json()["results"]] == [
        ("acme", "operator"),
        ("globex", "viewer"),
    ]


def test_an_owner_sets_the_postal_address(alice_client, org):
    response = alice_client.patch(f"{URL}acme/", {"postal_address": "  Acme GmbH\nMain St 1, Berlin  "}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["postal_address"] == "Acme GmbH\nMain St 1, Berlin"
    org.refresh_from_db()
    assert org.postal_address == "Acme GmbH\nMain St 1, Berlin"


def test_only_an_owner_or_staff_changes_it_and_nobody_reaches_another_organization(
    bob_client, viewer_client, charlie_client, staff, org
):
    change = {"postal_address": "Elsewhere 9"}
    assert bob_client.patch(f"{URL}acme/", change, format="json").status_code == 403  # an operator
    assert viewer_client.patch(f"{URL}acme/", change, format="json").status_code == 403
    assert charlie_client.patch(f"{URL}acme/", change, format="json").status_code == 404
    assert charlie_client.get(f"{URL}acme/").status_code == 404
    assert APIClient().get(URL).status_code in (401, 403)
    org.refresh_from_db()
    assert org.postal_address == "1 Test Street, 10115 Berlin, Germany"
    MembershipFactory(user=staff, organization=org, role="viewer")  # staff reach it as members do
    staff_client = APIClient()
    staff_client.force_authenticate(staff)
    assert staff_client.patch(f"{URL}acme/", change, format="json").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "new"}, "slug"),
        ({"role": "owner"}, "role"),
        ({"postal_address": "x" * 501}, "postal_address"),
        ({"postal_address": "Main St\u0000 1"}, "postal_address"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(alice_client, org, body, field):
    response = alice_client.patch(f"{URL}acme/", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    org.refresh_from_db()
    assert (org.slug, org.name, org.postal_address) == ("acme", "Acme", "1 Test Street, 10115 Berlin, Germany")


def test_an_smtp_campaign_does_not_start_without_the_postal_address(alice_client, org):
    Organization.objects.filter(pk=org.pk).update(postal_address="  ")
    campaign = CampaignFactory(organization=org)
    response = alice_client.post(f"/api/v1/campaigns/{campaign.pk}/start/")
    assert response.status_code == 409
    assert response.json()["missing"] == ["the organization's postal address (PATCH /api/v1/organizations/{slug}/)"]

    assert alice_client.patch(f"{URL}acme/", {"postal_address": "Acme, Berlin"}, format="json").status_code == 200
    assert alice_client.post(f"/api/v1/campaigns/{campaign.pk}/start/").status_code == 200
