"""A sequence under a fault, with real processes (tests/faults/harness.py): workers SIGKILLed while
step 2 of two campaigns is being sent. The sweeper takes the lost send jobs back from their
journals and arms nothing twice; at the end every sendable lead got step 1 once and step 2 once
(the cut-off hand-overs, at most one per killed job, resolved by the operator from the sink's
log), and both campaigns completed."""

import pytest

from .conftest import LEADS
from .harness import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def test_workers_killed_during_a_follow_up_step_send_nothing_twice(system):
    ids = system.driver("sequences", "2", str(LEADS))["ids"]

    def step_two_in_flight():
        rows = system.postgres.query(
            "SELECT count(*) FROM tracking_recipient WHERE campaign_id = ANY(%s::uuid[]) "
            "AND sequence_step = 2 AND status = 'sending'",
            ids,
        )
        return rows[0][0] > 0

    wait_until(step_two_in_flight, timeout=150, interval=0.02, what="step 2 in flight")
    for index in range(len(system.workers)):
        system.kill_worker(index)
    system.workers = []
    system.start_workers(2)

    def settled():
        statuses = system.statuses(ids)
        stuck = system.postgres.query(
            "SELECT count(*) FROM tracking_recipient WHERE campaign_id = ANY(%s::uuid[]) AND status = 'sending'", ids
        )[0][0]
        if all(status == "completed" for status in statuses.values()):
            return "completed"
        jobs = system.jobs_by_status(ids)
        return "stuck" if stuck and not jobs.get("pending") and not jobs.get("processing") else None

    state = wait_until(settled, timeout=180, interval=0.5, what="the sequence to finish or wait for an operator")
    received = system.sink.received()
    if state == "stuck":
        stuck = system.postgres.query(
            "SELECT email, sequence_step FROM tracking_recipient WHERE campaign_id = ANY(%s::uuid[]) "
            "AND status = 'sending'",
            ids,
        )
        assert len(stuck) <= 4, stuck  # two workers of two processes: one cut-off hand-over each at most
        # What the sink holds is what the server accepted: as many messages as the step means it arrived
        # (the other campaign may still have been on step 1 when the workers were killed).
        delivered = [email for email, step in stuck if received[email] >= step]
        system.driver("resolve", ",".join(delivered), *ids)
    statuses = system.wait_for_final(ids, timeout=150)
    assert set(statuses.values()) == {"completed"}, statuses

    report = system.driver("report", *ids)
    received = system.sink.received()
    for figures in report.values():
        sendable = LEADS - LEADS // 10
        assert figures["recipients"] == {"sent": sendable}, figures["recipients"]
        assert figures["status_message"].endswith(f"{sendable} sent."), figures["status_message"]
        assert sorted(received[address] for address in figures["sent_to"]) == [2] * len(figures["sent_to"])
    mailed = {address for figures in report.values() for address in figures["sent_to"]}
    assert len(mailed) == 2 * (LEADS - LEADS // 10)
    assert not [address for address in mailed if received[address] > 2]  # nobody got a step twice
