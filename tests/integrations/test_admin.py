import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from integrations.models import SandboxSetting

CHANGELIST = "admin:integrations_sandboxsetting_changelist"


@pytest.fixture
def rows(db):
    return {setting.service: setting for setting in SandboxSetting.objects.all()}


def test_every_service_has_a_toggle(admin_client_logged_in, rows):
    response = admin_client_logged_in.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert set(rows) == {"apollo", "instantly", "millionverifier", "openai", "perplexity", "smtp"}
    assert b"MillionVerifier" in response.content


def test_an_operator_injects_failure_and_it_is_logged(admin_client_logged_in, rows, staff):
    response = admin_client_logged_in.post(
        reverse(CHANGELIST),
        {"action": "inject_failure", "_selected_action": [rows["apollo"].pk, rows["smtp"].pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert set(SandboxSetting.objects.filter(fail=True).values_list("service", flat=True)) == {"apollo", "smtp"}
    assert "2 sandbox(es) now fail every call" in response.content.decode()
    assert LogEntry.objects.filter(user=staff, object_id=str(rows["apollo"].pk)).exists()


def test_an_operator_stops_injecting_failure(admin_client_logged_in, rows):
    SandboxSetting.objects.update(fail=True)
    admin_client_logged_in.post(
        reverse(CHANGELIST), {"action": "stop_injecting_failure", "_selected_action": [rows["openai"].pk]}
    )
    assert not SandboxSetting.objects.get(service="openai").fail
    assert SandboxSetting.objects.get(service="apollo").fail
