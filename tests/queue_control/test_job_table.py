"""The job table's shape that keeps the queue pause fast (benchmarks/cascade.py): its one UPDATE of
every active job must be HOT in PostgreSQL, which only holds while no index covers the columns it
writes and each page keeps free room."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from campaigns.models import Job
from tests.factories import JobFactory

PAUSE_WRITES = {"status", "updated_at"}


def test_no_index_of_the_job_table_covers_a_column_the_pause_writes(db):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Job._meta.db_table)
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [Job._meta.db_table])
        definitions = dict(cursor.fetchall())
    indexes = {name: c for name, c in constraints.items() if c["index"]}
    assert indexes, "introspection found no index"
    for name, index in indexes.items():
        assert not PAUSE_WRITES & set(index["columns"]), f"{name} indexes {index['columns']}"
        # A partial index's predicate counts too.
        assert not any(column in definitions[name] for column in PAUSE_WRITES), definitions[name]


def test_the_job_table_keeps_free_room_in_each_page(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [Job._meta.db_table])
        (options,) = cursor.fetchone()
    assert "fillfactor=50" in (options or [])


@pytest.mark.parametrize(
    ("status", "finished"),
    [("completed", False), ("failed", False), ("cancelled", False), ("pending", True), ("paused", True)],
)
def test_finished_at_is_set_exactly_when_a_job_is_final(db, status, finished):
    job = JobFactory()
    with pytest.raises(IntegrityError, match="job_finished_iff_final"), transaction.atomic():
        Job.objects.filter(pk=job.pk).update(status=status, finished_at=timezone.now() if finished else None)


def test_active_is_every_job_not_yet_final(db):
    jobs = {status: JobFactory(status=status) for status in ("pending", "processing", "paused", "completed", "failed")}

    active = set(Job.objects.active().values_list("pk", flat=True))

    assert active == {jobs[s].pk for s in ("pending", "processing", "paused")}


def test_the_job_table_has_no_foreign_key_trigger(db):
    """Any foreign key on campaigns_job adds a per-row trigger to the pause's UPDATE."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Job._meta.db_table)
    assert not [name for name, c in constraints.items() if c["foreign_key"]]


def test_deleting_a_campaign_still_deletes_its_jobs(db):
    job = JobFactory()
    job.campaign.delete()
    assert not Job.objects.filter(pk=job.pk).exists()
