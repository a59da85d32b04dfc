#!/usr/bin/env python
"""Fail fast, naming the server and how to start it, when the test suite's services are down."""

import os
import sys

import psycopg
import redis

HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no',
}


def main() -> int:
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    failures = []
    try:
        # The maintenance database, as Django uses to create test_<name>: the named one may not exist.
        params = psycopg.conninfo.conninfo_to_dict(database_url.replace("postgres://", "postgresql://", 1))
        psycopg.connect(**{**params, "dbname": "postgres"}, connect_timeout=3).close()
    except Exception as exc:
        failures.append(("PostgreSQL", database_url, exc))
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception as exc:
        failures.append(("Redis", redis_url, exc))
    for name, url, exc in failures:
        print(f"{name} is not reachable at {url}: {exc}", file=sys.stderr)
        print(f"  start it with: {HOW_TO_START[name]}", file=sys.stderr)
        print(
            f"  or point {'DATABASE_URL' if name == 'PostgreSQL' else 'REDIS_URL'} at a running server.",
            file=sys.stderr,
        )
    if failures:
        print("Tests need the real servers; refusing to run a partial suite.", file=sys.stderr)
        return 1
    print(f"PostgreSQL at {database_url} and Redis at {redis_url} are reachable.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
