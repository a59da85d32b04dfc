from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from redis import RedisError

from campaigns_project.redis import get_redis

# The product's apps, top of the import graph first; within each, get_models() order is refined
# below into a foreign-key-safe delete order.
APP_LABELS = ("tracking", "campaigns", "queue_control", "integrations")
# Operator configuration rather than run state: kept unless --all.
KEPT_MODELS = {"integrations.sandboxsetting"}


def _delete_order(models: list) -> list:
    """Children before parents: a model is deleted only after every model pointing at it."""
    remaining, ordered = list(models), []
    while remaining:
        for model in remaining:
            referrers = [
                other
                for other in remaining
                if other is not model
                and any(f.related_model is model for f in other._meta.get_fields() if f.many_to_one or f.one_to_one)
            ]
            if not referrers:
                ordered.append(model)
                remaining.remove(model)
                break
        else:  # a cycle: let the database cascade sort it out
            ordered.extend(remaining)
            break
    return ordered


class Command(BaseCommand):
    help = (
        "Empty the app's tables (jobs, leads, recipients, events, links, campaigns, organizations, queue history) "
        "and its Redis keys; reset the queue to active and every breaker to closed. Keeps users, beat schedules "
        "and sandbox switches unless --all."
    )

    def add_arguments(self, parser):
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        parser.add_argument("--force", action="store_true", help="Run even with DEBUG off (production data!).")
        parser.add_argument(
            "--all", action="store_true", help="Also remove users, beat schedules and sandbox switches."
        )
        parser.add_argument(
            "--flush-redis-all",
            action="store_true",
            help="FLUSHALL the Redis server instead of deleting the app's keys.",
        )

    def handle(self, *args, yes=False, force=False, all=False, flush_redis_all=False, **options) -> str:
        if not (settings.DEBUG or settings.TESTING or force):
            raise CommandError("Refusing to reset: DEBUG is off (this looks like production). Pass --force to insist.")
        if not yes:
            try:
                answer = input("This deletes all campaign data and the app's Redis keys. Type 'yes' to go on: ")
            except EOFError:
                answer = ""
            if answer.strip().lower() != "yes":
                raise CommandError("Aborted: not confirmed (pass --yes to skip the question).")

        redis = get_redis()
        try:
            redis.ping()
        except RedisError as exc:
            raise CommandError(
                f"Redis at {settings.REDIS_URL} does not answer ({exc}); nothing was reset. "
                "Is `make run` (or your Redis) running?"
            )

        models = [
            model
            for label in APP_LABELS
            # With the many-to-many tables (a mailbox's campaigns), which point at both sides.
            for model in apps.get_app_config(label).get_models(include_auto_created=True)
            if all or model._meta.label_lower not in KEPT_MODELS
        ]
        if all:
            from django.contrib.auth.models import Group
            from django_celery_beat import models as beat
            from rest_framework.authtoken.models import Token

            models += [Token, get_user_model(), Group, beat.PeriodicTask, beat.IntervalSchedule, beat.CrontabSchedule]
        models = _delete_order(models)
        counts = {model._meta.db_table: model._default_manager.count() for model in models}

        with transaction.atomic():
            if connection.vendor == "postgresql":
                tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models)
                with connection.cursor() as cursor:
                    cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")  # noqa: S608 (our table names)
            else:
                for model in models:  # one statement per table, children first
                    model._base_manager.all()._raw_delete(connection.alias)

        if flush_redis_all:
            redis.flushall()
            redis_line = "Redis: FLUSHALL done (every key on the server)."
        else:
            keys = list(redis.scan_iter(match=settings.REDIS_KEY_PREFIX + "*", count=1000))
            for start in range(0, len(keys), 1000):
                redis.delete(*keys[start : start + 1000])
            redis_line = f"Redis: {len(keys)} key(s) with prefix {settings.REDIS_KEY_PREFIX!r} deleted."

        from queue_control.models import QueueState

        QueueState.get()  # recreate the latch row: active

        lines = [f"  {table}: {count}" for table, count in counts.items()]
        return "\n".join(
            [
                "Removed rows:",
                *lines,
                redis_line,
                "Queue: active. Breakers: closed (their Redis state is gone).",
                "Organizations are gone: run `manage.py seed_demo` to re-create the demo organization and admin "
                "(make run does at each start, the runbook after its reset).",
            ]
        )
