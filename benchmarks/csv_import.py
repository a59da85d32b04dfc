"""CSV lead import against raw PostgreSQL COPY of the same file, side by side in one run.

    createdb -h 127.0.0.1 -U postgres bench_csv
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_csv DEBUG=true .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_csv DEBUG=true .venv/bin/python benchmarks/csv_import.py
    dropdb -h 127.0.0.1 -U postgres bench_csv

Target (design §8 (docs/design.md)): the import of 1,000,000 leads within 2x of raw COPY. The raw COPY loads the
same file into a table shaped like the leads' CSV columns, without validation or dedupe; the
import validates every row, dedupes by email, and writes campaigns_lead with its indexes.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns_project.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from campaigns.csv_import import leads_import_csv  # noqa: E402
from campaigns.models import Campaign, Organization  # noqa: E402

ROWS = int(os.environ.get("ROWS", "1000000"))
HEADER = "email,first_name,last_name,title,company,company_domain,linkedin_url,phone\n"


def write_csv(path: Path) -> None:
    with path.open("w") as fh:
        fh.write(HEADER)
        for i in range(ROWS):
            fh.write(
                f"lead{i}@company{i % 5000}.example,First{i},Last{i},CTO,Company {i % 5000},"
                f"company{i % 5000}.example,https://www.linkedin.com/in/lead{i},+4930{i:07d}\n"
            )


def raw_copy(path: Path) -> float:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_raw_leads")
        cursor.execute(
            "CREATE TABLE bench_raw_leads (email varchar(254), first_name varchar(255), last_name varchar(255), "
            "title varchar(255), company varchar(255), company_domain varchar(255), linkedin_url varchar(500), "
            "phone varchar(64))"
        )
        started = time.perf_counter()
        with path.open("rb") as fh, cursor.copy("COPY bench_raw_leads FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
            while chunk := fh.read(1 << 20):
                copy.write(chunk)
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_raw_leads")
    return elapsed


def raw_copy_into_leads(path: Path, campaign: Campaign) -> float:
    """COPY the same file straight into campaigns_lead (its indexes and unique constraint included),
    the columns the file lacks filled by temporary column defaults; rolled back afterwards."""
    defaults = {
        "campaign_id": f"'{campaign.pk}'",
        "source": "'csv'",
        "source_id": "''",
        "email_status": "'unverified'",
        "enrichment": "'{}'",
        "created_at": "now()",
    }
    with transaction.atomic(), connection.cursor() as cursor:
        for column, value in defaults.items():
            cursor.execute(f"ALTER TABLE campaigns_lead ALTER COLUMN {column} SET DEFAULT {value}")
        started = time.perf_counter()
        sql = f"COPY campaigns_lead ({HEADER.strip()}) FROM STDIN WITH (FORMAT csv, HEADER)"
        with path.open("rb") as fh, cursor.copy(sql) as copy:
            while chunk := fh.read(1 << 20):
                copy.write(chunk)
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return elapsed


def import_csv(path: Path, campaign: Campaign) -> tuple[float, dict]:
    started = time.perf_counter()
    with path.open("rb") as fh:
        result = leads_import_csv(campaign_id=campaign.pk, file=fh, file_name=path.name)
    return time.perf_counter() - started, result


def main() -> None:
    if not connection.settings_dict["NAME"].startswith("bench"):
        sys.exit("Refusing: run this against a database whose name starts with 'bench'.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "leads.csv"
        write_csv(path)
        size_mb = path.stat().st_size / 1e6
        org, _ = Organization.objects.get_or_create(slug="bench-csv", defaults={"name": "bench"})
        campaign = Campaign.objects.create(organization=org, name="csv bench", lead_count=1)
        try:
            bare_s = raw_copy(path)
            copy_s = raw_copy_into_leads(path, campaign)
            import_s, result = import_csv(path, campaign)
        finally:
            Campaign.objects.filter(pk=campaign.pk).delete()
    print(f"{ROWS:,} rows, {size_mb:.0f} MB CSV")
    print(f"  raw COPY into a bare table          {bare_s:7.2f} s")
    print(f"  raw COPY into campaigns_lead        {copy_s:7.2f} s")
    print(
        f"  leads_import_csv (validate, dedupe) {import_s:7.2f} s   "
        f"({import_s / copy_s:.2f}x the COPY into campaigns_lead, {import_s / bare_s:.2f}x the bare COPY)"
        f"  imported={result.get('imported')}"
    )


if __name__ == "__main__":
    main()
