"""The queue belongs to the platform: only staff, or a user granted queue_control.operate_queue,
pause it, resume it or reset a breaker (API and admin alike). Members of an organization read the
state and the breakers, and only their own organization's counts.

Personas: Alice owns Acme, Bob operates it, Victor views it, Charlie owns Globex, Nora has no
membership, Olga is no member and not staff but was granted the permission, the admin is staff."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from queue_control import breakers
from queue_control.models import QueueEvent, QueueState
from queue_control.services import queue_pause
from tests.breakers import breaker_trip
from tests.factories import CampaignFactory, JobFactory, UserFactory

from .conftest import BREAKERS, PAUSE, RESUME, STATUS, reset_url

pytestmark = pytest.mark.django_db

CHANGES = [("pause", PAUSE), ("resume", RESUME), ("reset", reset_url("apollo"))]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def nora(db):
    return UserFactory(username="nora")


@pytest.fixture
def olga(db):
    user = UserFactory(username="olga")
    user.user_permissions.add(Permission.objects.get(codename="operate_queue", content_type__app_label="queue_control"))
    return user


@pytest.fixture
def work(org, other_org):
    """Running work in both organizations: Acme 1 running campaign with 2 jobs, Globex 2 with 3."""
    acme = CampaignFactory(organization=org, status="running", phase="verification")
    JobFactory.create_batch(2, campaign=acme, status="pending")
    for _ in range(2):
        globex = CampaignFactory(organization=other_org, status="running", phase="verification")
    JobFactory.create_batch(3, campaign=globex, status="pending")


@pytest.fixture
def by_role(alice, bob, viewer, charlie, nora, olga, staff):
    return {
        "owner": client_for(alice),
        "operator": client_for(bob),
        "viewer": client_for(viewer),
        "other organization's owner": client_for(charlie),
        "no membership": client_for(nora),
        "granted operate_queue": client_for(olga),
        "staff": client_for(staff),
        "anonymous": APIClient(),
    }


TENANTS = ["owner", "operator", "viewer", "other organization's owner", "no membership"]
PLATFORM = ["granted operate_queue", "staff"]


@pytest.mark.parametrize("role", TENANTS)
@pytest.mark.parametrize(("change", "url"), CHANGES)
def test_no_member_of_an_organization_can_change_the_queue(by_role, role, change, url):
    if change == "reset":
        breaker_trip(service="apollo", error="502")
    if change == "resume":
        queue_pause(reason="maintenance")
    before = (QueueState.get().state, QueueEvent.objects.count(), breakers.breaker_state_fast("apollo"))

    response = by_role[role].post(url, {}, format="json")

    assert response.status_code == 403
    assert "platform permission" in response.json()["detail"]
    assert (QueueState.get().state, QueueEvent.objects.count(), breakers.breaker_state_fast("apollo")) == before


@pytest.mark.parametrize(("change", "url"), CHANGES)
def test_anonymous_clients_cannot_change_the_queue(by_role, change, url):
    assert by_role["anonymous"].post(url, {}, format="json").status_code == 401
    assert QueueState.get().state == "active"


@pytest.mark.parametrize("role", PLATFORM)
def test_the_platform_pauses_resets_and_resumes(by_role, role):
    client = by_role[role]
    assert client.post(PAUSE, {"reason": "deploy"}, format="json").status_code == 200
    assert QueueState.get().state == "paused"
    breaker_trip(service="apollo", error="502")
    assert client.post(reset_url("apollo"), format="json").status_code == 200
    assert breakers.breaker_state_fast("apollo") == "closed"
    assert client.post(RESUME, format="json").status_code == 200
    assert QueueState.get().state == "active"


@pytest.mark.parametrize("role", ["owner", "operator", "viewer", *PLATFORM])
def test_members_and_the_platform_read_the_state_and_the_breakers(by_role, role):
    status = by_role[role].get(STATUS)
    assert status.status_code == 200
    assert status.json()["state"] == "active" and len(status.json()["breakers"]) == 6
    assert by_role[role].get(BREAKERS).status_code == 200


def test_anonymous_clients_read_nothing(by_role):
    assert by_role["anonymous"].get(STATUS).status_code == 401
    assert by_role["anonymous"].get(BREAKERS).status_code == 401


@pytest.mark.parametrize(
    ("role", "running", "pending", "scope"),
    [
        ("owner", 1, 2, "your organizations"),
        ("viewer", 1, 2, "your organizations"),
        ("other organization's owner", 2, 3, "your organizations"),
        ("no membership", 0, 0, "your organizations"),
        ("granted operate_queue", 3, 5, "all"),
        ("staff", 3, 5, "all"),
    ],
)
def test_each_reader_sees_only_the_counts_of_their_own_organizations(by_role, work, role, running, pending, scope):
    data = by_role[role].get(STATUS).json()
    assert (data["counts"]["running_campaigns"], data["counts"]["pending_jobs"], data["counts_scope"]) == (
        running,
        pending,
        scope,
    )


# --- the admin page obeys the same rule ----------------------------------------------------------


def test_a_staff_user_operates_the_queue_from_the_admin(client, staff):
    client.force_login(staff)
    response = client.post("/admin/queue-control/pause/", {"reason": "from the admin", "confirmed": "yes"})
    assert response.status_code == 302
    assert QueueState.get().reason == "from the admin"


def test_an_admin_user_without_the_platform_permission_is_refused(client, monkeypatch, staff):
    """The admin's buttons ask queue_control.permissions, as the API does: whoever that refuses
    changes nothing from the admin either."""
    monkeypatch.setattr("queue_control.admin.user_can_operate_queue", lambda user: False)
    client.force_login(staff)
    for url in (
        "/admin/queue-control/pause/",
        "/admin/queue-control/resume/",
        "/admin/queue-control/breakers/apollo/reset/",
    ):
        assert client.post(url).status_code == 403
    assert QueueState.get().state == "active" and not QueueEvent.objects.exists()


def test_members_who_are_not_staff_never_reach_the_admin_page(client, alice):
    client.force_login(alice)
    response = client.post("/admin/queue-control/pause/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert QueueState.get().state == "active"
