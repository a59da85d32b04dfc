"""Hand-written SQL names its tables from the models, never by a literal table name: a model's
db_table is the one place a table is named."""

import re
from pathlib import Path

from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent
APPS = ("campaigns", "tracking", "queue_control", "integrations")


def test_no_product_module_spells_a_table_name():
    tables = {model._meta.db_table for app in APPS for model in apps.get_app_config(app).get_models()}
    assert "tracking_recipient" in tables
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, tables), key=len, reverse=True)) + r")\b")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
