"""The system the fault tests share: started once for the package (a private PostgreSQL cluster and
redis-server, fake providers, the SMTP sink, two workers and beat), and what every scenario checks
at its end."""

import pytest

from .harness import System

CAMPAIGNS, LEADS = 3, 100


@pytest.fixture(scope="package")
def system():
    system = System()
    try:
        system.up()
        system.start_workers(2)
        system.start_beat()
        yield system
    finally:
        system.down()


@pytest.fixture
def campaigns(system):
    """Three campaigns started; every scenario leaves the system as it found it (workers up)."""
    ids = system.driver("campaigns", str(CAMPAIGNS), str(LEADS))["ids"]
    yield ids
    alive = [proc for proc in system.workers if proc.poll() is None]
    if len(alive) < 2:
        system.workers = alive
        system.start_workers(2 - len(alive))


def assert_done_right(system, ids, *, calls_in_flight_repaid: int = 0) -> dict:
    """Every campaign completed, every lead verified and enriched once, every sendable lead mailed
    exactly once, nothing left to do, and each final message says what happened."""
    statuses = system.wait_for_final(ids, timeout=150)
    expected = len(ids)
    report = system.driver("report", *ids)
    received = system.sink.received()
    for campaign_id, figures in report.items():
        assert statuses[campaign_id] == "completed", figures
        assert set(figures["jobs"]) <= {"completed", "failed", "cancelled"}, figures["jobs"]
        by_status = figures["by_email_status"]
        assert "unverified" not in by_status, by_status
        sendable = by_status.get("valid", 0) + by_status.get("catch_all", 0)
        assert (figures["leads"], by_status.get("invalid", 0), sendable) == (LEADS, LEADS // 10, LEADS - LEADS // 10)
        assert figures["enriched"] == sendable
        assert figures["recipients"] == {"sent": sendable}, figures["recipients"]
        phases = figures["phases"]
        assert phases["verification"]["items_done"] == LEADS, phases  # each lead's verdict stored once
        assert phases["enrichment"]["items_passed"] == sendable, phases
        assert phases["outreach"]["items_passed"] == sendable, phases
        assert figures["status_message"] == (
            f"Completed: {LEADS} leads, {sendable} verified, {sendable} enriched; {sendable} sent."
        )
        assert [received[address] for address in figures["sent_to"]] == [1] * sendable  # each once, none twice
    mailed = [address for campaign in report.values() for address in campaign["sent_to"]]
    assert not [address for address in mailed if received[address] != 1]
    verified = {
        email for email, n in system.providers.calls["verify"].items() if email.split("@")[1] in _domains(report)
    }
    assert len(verified) == expected * LEADS
    repaid = sum(n - 1 for email, n in system.providers.calls["verify"].items() if email in verified)
    assert repaid <= calls_in_flight_repaid, f"{repaid} verifier calls paid twice"
    return report


def taken_back(system, ids, job_type: str, note: str = "") -> int:
    """Jobs of that type the sweeper took back from a lost worker (their last error says so)."""
    rows = system.postgres.query(
        "SELECT count(*) FROM campaigns_job WHERE campaign_id = ANY(%s::uuid[]) AND job_type = %s "
        "AND last_error LIKE %s",
        ids,
        job_type,
        f"Stuck in processing%{note}%",
    )
    return rows[0][0]


def _domains(report: dict) -> set[str]:
    return {address.split("@")[1] for campaign in report.values() for address in campaign["sent_to"]}
