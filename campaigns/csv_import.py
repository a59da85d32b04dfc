"""A campaign's leads from a CSV upload: all or nothing.

The file is read as a stream and validated row by row; valid rows are written in batches (COPY on
PostgreSQL, bulk_create elsewhere) inside one transaction. A bad row stops the writing, the rest
of the file is still checked so the answer lists every problem with its line number, and the
transaction is rolled back: a rejected upload writes nothing.

Memory stays bounded by the batch size, except for the set of addresses already seen (needed to
report in-file duplicates): about 100 bytes per distinct address, some 100 MB for a million rows.
"""

import csv
import io
import re
from contextlib import contextmanager
from operator import le
from typing import IO

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import connection, transaction
from django.utils import timezone

from campaigns_project.errors import ApplicationError

from .models import Campaign, Lead
from .states import CampaignStatus
from .transitions import campaign_event_record

EMAIL_COLUMN = "email"
# Optional columns and their maximum lengths (the Lead model's).
OPTIONAL_COLUMNS = {
    "first_name": 255,
    "last_name": 255,
    "title": 255,
    "company": 255,
    "company_domain": 255,
    "linkedin_url": 500,
    "phone": 64,
}
EMAIL_MAX_LENGTH = 254
UPLOAD_STATUSES = (CampaignStatus.DRAFT,)  # once started, the lead list is the pipeline's
SOURCE = "csv"
BATCH_SIZE = 5000
MAX_LISTED = 100  # errors and duplicate lines listed in an answer; the counts are always complete
COPY_COLUMNS = (
    "campaign_id",
    "email",
    *OPTIONAL_COLUMNS,
    "source",
    "source_id",
    "email_status",
    "enrichment",
    "created_at",
)
_validate_url = URLValidator(schemes=["http", "https"])


class CsvImportError(Exception):
    """The upload is refused; `errors` lists {line, field, message} for the first bad rows."""

    def __init__(self, message: str, *, errors: list[dict] | None = None, error_count: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        self.error_count = error_count or len(self.errors)


def leads_import_csv(*, campaign_id, file: IO[bytes], file_name: str, actor=None) -> dict:
    """Replace a draft campaign's leads with the rows of a CSV file (header with an email column;
    optional first_name, last_name, title, company, company_domain, linkedin_url, phone).

    Raises CsvImportError (nothing written) for a bad file, ApplicationError unless the campaign
    is a draft. Duplicate addresses within the file are skipped and reported.
    """
    file_name = (file_name or "upload.csv").replace("\\", "/").rsplit("/", 1)[-1][:255]
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(text)
        rows = _rows(reader)
        columns, ignored = _columns(next(rows, (1, None))[1])
        with transaction.atomic():
            # Lock so a concurrent start cannot begin the pipeline on a half-replaced lead list.
            campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
            if campaign.status not in UPLOAD_STATUSES:
                raise ApplicationError(
                    f"Leads can be uploaded only to a draft campaign; this one is {campaign.status}.",
                    current_status=campaign.status,
                )
            _leads_delete(campaign)
            with _lead_writer() as write:
                counts = _import_rows(campaign, rows, columns, write)
            Campaign.objects.filter(pk=campaign.pk).update(
                file_name=file_name, total_records=counts["imported"], updated_at=timezone.now()
            )
            campaign_event_record(
                campaign=campaign,
                action="campaign.leads_uploaded",
                from_status=campaign.status,
                to_status=campaign.status,
                actor=actor,
                reason=f"{counts['imported']} leads from {file_name} ({counts['duplicates']} duplicates skipped)",
            )
    finally:
        text.detach()  # the caller owns the file
    return {"file_name": file_name, "total_records": counts["imported"], "ignored_columns": ignored, **counts}


def _rows(reader):
    """(line number, cells) for each record; a malformed or non-UTF-8 file is refused."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CsvImportError(f"Line {reader.line_num}: the file is not valid CSV ({exc}).")
        except UnicodeDecodeError:
            raise CsvImportError(f"Line {reader.line_num + 1}: the file is not UTF-8 text.")
        yield reader.line_num, row


def _columns(header: list[str] | None) -> tuple[dict[str, int], list[str]]:
    """{known column: index} from the header row, and the names of the columns ignored."""
    if not header:
        raise CsvImportError("The file is empty; it needs a header row with an email column.")
    names = [cell.strip().lower().replace(" ", "_").replace("-", "_") for cell in header]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise CsvImportError(f"The header repeats the column(s): {', '.join(repeated)}.")
    if EMAIL_COLUMN not in names:
        found = ", ".join(name for name in names if name) or "nothing"
        raise CsvImportError(f"The header must contain an email column; found: {found}.")
    known = (EMAIL_COLUMN, *OPTIONAL_COLUMNS)
    return {name: names.index(name) for name in known if name in names}, [n for n in names if n and n not in known]


def _import_rows(campaign: Campaign, rows, columns: dict[str, int], write) -> dict:
    width = max(columns.values()) + 1
    email_at = columns[EMAIL_COLUMN]
    optional_at = [columns.get(name) for name in OPTIONAL_COLUMNS]
    # The columns every row shares, as text (see _lead_writer).
    head, tail = str(campaign.pk), (SOURCE, "", Lead.EmailStatus.UNVERIFIED, "{}", timezone.now().isoformat())
    seen: set[str] = set()
    errors: list[dict] = []
    error_count = duplicates = imported = 0
    duplicate_lines: list[int] = []
    batch: list[tuple] = []
    for line, cells in rows:
        if (len(cells) <= email_at or not cells[email_at]) and not "".join(cells).strip():
            continue  # blank line (the join only runs for the rare row without an email cell)
        if len(cells) < width:
            cells = cells + [""] * (width - len(cells))
        email = cells[email_at].strip().lower()
        values = [cells[index].strip() if index is not None else "" for index in optional_at]
        problems = _check(email, values)
        if problems:
            error_count += len(problems)
            errors.extend({"line": line, "field": field, "message": message} for field, message in problems)
            del errors[MAX_LISTED:]
            batch.clear()  # nothing more is written: the upload will be refused
            continue
        if email in seen:
            duplicates += 1
            if len(duplicate_lines) < MAX_LISTED:
                duplicate_lines.append(line)
            continue
        seen.add(email)
        if error_count:
            continue
        batch.append((head, email, *values, *tail))
        imported += 1
        if len(batch) >= BATCH_SIZE:
            write(batch)
            batch.clear()
    if error_count:
        raise CsvImportError(
            f"{error_count} problem{'s' if error_count != 1 else ''} in the file; nothing was imported.",
            errors=errors,
            error_count=error_count,
        )
    if not imported:
        raise CsvImportError("The file has a header but no lead rows.")
    if batch:
        write(batch)
    return {"imported": imported, "duplicates": duplicates, "duplicate_lines": duplicate_lines}


# Fast paths for the common shapes of an address and a profile URL. Each accepts only values
# Django's validators accept too, so they decide nothing on their own: a value they do not match
# goes to the Django validator, which has the last word. (Django's validators cost some 40 µs a
# call, most of a million-row import.)
_SIMPLE_EMAIL = re.compile(
    r"[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.ASCII
)
_SIMPLE_URL = re.compile(
    r"https?://(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}(?:/[^\s]*)?", re.ASCII | re.IGNORECASE
)
_LINKEDIN_AT = list(OPTIONAL_COLUMNS).index("linkedin_url")
_LIMITS = tuple(OPTIONAL_COLUMNS.values())


def _valid(validator, value: str) -> bool:
    try:
        validator(value)
    except ValidationError:
        return False
    return True


def _plainly_valid(email: str, values: list[str]) -> bool:
    """The common row, decided in a few C-level calls; anything unusual goes to _check's detail."""
    url = values[_LINKEDIN_AT]
    return (
        len(email) <= EMAIL_MAX_LENGTH
        and _SIMPLE_EMAIL.fullmatch(email) is not None  # no NUL either: the pattern excludes it
        and all(map(le, map(len, values), _LIMITS))
        and "\x00" not in "".join(values)
        and (not url or (len(url) <= 253 and _SIMPLE_URL.fullmatch(url) is not None))
    )


def _check(email: str, values: list[str]) -> list[tuple[str, str]]:
    """(field, message) for each problem of one row; email is stripped and lower-cased."""
    if _plainly_valid(email, values):
        return []
    problems = []
    if "\x00" in email or "\x00" in "".join(values):
        problems.append(("", "contains a NUL character"))
    if not email:
        problems.append((EMAIL_COLUMN, "the email is missing"))
    elif len(email) > EMAIL_MAX_LENGTH:
        problems.append((EMAIL_COLUMN, f"the email is longer than {EMAIL_MAX_LENGTH} characters"))
    elif not (_SIMPLE_EMAIL.fullmatch(email) or _valid(validate_email, email)):
        problems.append((EMAIL_COLUMN, f"{email!r} is not a valid email address"))
    for (name, limit), value in zip(OPTIONAL_COLUMNS.items(), values, strict=True):
        if len(value) > limit:
            problems.append((name, f"{name} is longer than {limit} characters"))
    url = values[_LINKEDIN_AT]
    if url and len(url) <= OPTIONAL_COLUMNS["linkedin_url"]:
        fast = len(url) <= 253 and _SIMPLE_URL.fullmatch(url)  # Django also caps the host at 253
        if not (fast or _valid(_validate_url, url)):
            problems.append(("linkedin_url", f"{url!r} is not a valid http(s) URL"))
    return problems


@contextmanager
def _lead_writer():
    """A function that stores a batch of rows. On PostgreSQL one COPY stays open for the whole
    file, so the server inserts while this process parses and checks the next rows; the rows go
    as CSV written by the csv module (in C), every value quoted, so an empty value is an empty
    string and never NULL. Elsewhere (SQLite), bulk_create."""
    if connection.vendor != "postgresql":
        names = COPY_COLUMNS[1:-2]  # email ... email_status; enrichment and created_at: model defaults

        def create(batch: list[tuple]) -> None:
            leads = [Lead(campaign_id=row[0], **dict(zip(names, row[1:-2], strict=True))) for row in batch]
            Lead.objects.bulk_create(leads, batch_size=500)

        yield create
        return
    statement = f"COPY {Lead._meta.db_table} ({', '.join(COPY_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:

        def send(batch: list[tuple]) -> None:
            buffer = io.StringIO()
            csv.writer(buffer, quoting=csv.QUOTE_ALL).writerows(batch)
            copy.write(buffer.getvalue())

        yield send


def _leads_delete(campaign: Campaign) -> None:
    """A new upload replaces the previous one. In batches: a Lead delete cascades (jobs,
    recipients), which Django resolves in Python."""
    while ids := list(campaign.leads.values_list("pk", flat=True)[:BATCH_SIZE]):
        Lead.objects.filter(pk__in=ids).delete()
