"""The engine under faults, with real processes: a private redis-server (the broker) and PostgreSQL
cluster, real Celery workers and beat (the sweeper), providers over HTTP, an SMTP sink counting
messages per address. Each scenario runs three CSV campaigns and must end by itself — no operator
act except where a breaker opened (reset + resume) — with every lead verified and enriched once
(what was stored), no address mailed twice, no job left pending, processing or paused, and the
campaign's final message true."""

import time

import pytest

from .conftest import assert_done_right, taken_back
from .harness import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def mid_batch(system, ids, at_least: int = 1) -> None:
    wait_until(lambda: system.processing_batches(ids) >= at_least, timeout=60, interval=0.05, what="batches in flight")


def test_a_worker_killed_mid_batch_leaves_nothing_undone_or_done_twice(system, campaigns):
    # Every pool process of both workers busy (2 x 2): then the worker killed surely holds a batch.
    mid_batch(system, campaigns, at_least=4)
    system.kill_worker(0)  # its pool too; the other worker goes on, the sweeper takes its jobs back
    # What a killed worker pays again: the calls it had in flight or answered but not stored yet
    # (two jobs of two calls each, within one flush of ENGINE_FLUSH_ITEMS).
    assert_done_right(system, campaigns, calls_in_flight_repaid=2 * 200)
    assert taken_back(system, campaigns, "verify_email") + taken_back(system, campaigns, "enrich_lead")


def test_every_worker_killed_mid_dispatch_is_recovered_by_new_workers(system, campaigns):
    mid_batch(system, campaigns)
    for index in range(len(system.workers)):
        system.kill_worker(index)
    time.sleep(1)
    system.workers = []
    system.start_workers(2)  # what a process supervisor does; no operator touches the product
    assert_done_right(system, campaigns, calls_in_flight_repaid=4 * 200)
    assert taken_back(system, campaigns, "verify_email") + taken_back(system, campaigns, "enrich_lead")


def test_a_broker_restarted_without_its_data_loses_no_work(system, campaigns):
    mid_batch(system, campaigns)
    system.redis.kill()  # every queued wake-up, the latch mirror, the breakers: gone
    time.sleep(2)
    system.redis.start()
    assert_done_right(system, campaigns, calls_in_flight_repaid=4 * 200)
    assert system.logged("stranded campaign queue"), "the sweeper never had to wake anything"


def test_a_postgresql_restart_mid_run_is_retried_not_consumed(system, campaigns):
    mid_batch(system, campaigns)
    system.postgres.stop("immediate")  # a crash: open transactions are lost, connections cut
    time.sleep(2)
    system.postgres.start()
    assert_done_right(system, campaigns, calls_in_flight_repaid=4 * 200)
    assert system.logged("database error, retrying"), "no task met the database's absence"


def test_an_smtp_server_down_for_a_while_opens_the_breaker_and_the_operator_resumes(system, campaigns):
    def sending_started():
        rows = system.postgres.query(
            "SELECT count(*) FROM tracking_recipient WHERE campaign_id = ANY(%s::uuid[])", campaigns
        )
        return rows[0][0] > 0

    wait_until(sending_started, timeout=90, interval=0.05, what="outreach to start")
    system.sink.stop()
    paused = wait_until(
        lambda: system.postgres.query("SELECT state, reason FROM queue_control_queuestate")[0][0] == "paused",
        timeout=60,
        what="the smtp breaker to pause the queue",
    )
    assert paused
    system.sink.start()
    assert system.driver("resume") == {"reset": ["smtp"], "queue": "active"}
    # A message whose DATA the dying server had taken but not answered is uncertain: at most one
    # per send job in flight, left for the operator (who reads the server's log).
    settled = wait_until(lambda: outreach_settled(system, campaigns), timeout=120, what="outreach to settle")
    assert settled.get("sending", 0) <= 4, f"{settled}\n{system.state_dump(campaigns)}"
    operator_resolves_uncertain(system, campaigns, settled)
    assert_done_right(system, campaigns)


def outreach_settled(system, campaigns) -> dict | None:
    """Recipients by status once every campaign is in outreach or done and no job is pending or
    processing (None before)."""
    before = system.postgres.query(
        "SELECT count(*) FROM campaigns_campaign WHERE id = ANY(%s::uuid[]) AND phase NOT IN ('outreach', 'done')",
        campaigns,
    )[0][0]
    rows = system.postgres.query(
        "SELECT status, count(*) FROM tracking_recipient WHERE campaign_id = ANY(%s::uuid[]) GROUP BY status",
        campaigns,
    )
    jobs = system.jobs_by_status(campaigns)
    return not before and not jobs.get("pending") and not jobs.get("processing") and dict(rows)


def operator_resolves_uncertain(system, campaigns, counts: dict) -> None:
    """Recipients left in sending (delivery uncertain) hold their campaign, which says so; the
    operator reads the mail server's log: what it accepted is marked sent, the rest sent again."""
    if not counts.get("sending"):
        return
    report = system.driver("report", *campaigns)
    waiting = [c for c in report.values() if c["status"] == "running"]
    assert waiting and all(c["status_message"].startswith("Waiting for an operator") for c in waiting)
    stuck = system.postgres.query(
        "SELECT email FROM tracking_recipient WHERE campaign_id = ANY(%s::uuid[]) AND status = 'sending'",
        campaigns,
    )
    received = system.sink.received()
    delivered = ",".join(email for (email,) in stuck if received[email])
    system.driver("resolve", delivered, *campaigns)


def test_a_worker_killed_during_a_send_hands_its_untouched_recipients_back(system, campaigns):
    def sending():
        # A send job that has claimed its recipients (a job just claimed may not have yet: killed
        # then, it has nothing to hand back and its recovery says nothing).
        rows = system.postgres.query(
            "SELECT count(*) FROM tracking_recipient WHERE campaign_id = ANY(%s::uuid[]) AND status = 'sending'",
            campaigns,
        )
        return rows[0][0] > 0

    wait_until(sending, timeout=90, interval=0.02, what="a send batch in flight")
    for index in range(len(system.workers)):
        system.kill_worker(index)
    system.workers = []
    system.start_workers(2)

    # The journal tells the sweeper which recipients were never handed over (back to pending, then
    # sent by the new workers) and which hand-over was cut off after its commit (left in sending,
    # at most one per killed send job, for an operator).
    counts = wait_until(lambda: outreach_settled(system, campaigns), timeout=120, what="outreach to settle")
    assert taken_back(system, campaigns, "send_email", "From its send journal")
    # Two workers of two processes: one cut-off hand-over each.
    assert counts.get("sending", 0) <= 4, f"{counts}\n{system.state_dump(campaigns)}"
    operator_resolves_uncertain(system, campaigns, counts)
    # The kill comes when the first send batch is in flight; another campaign may still be
    # verifying or enriching then, and its killed batch pays its in-flight window again.
    assert_done_right(system, campaigns, calls_in_flight_repaid=4 * 200)
