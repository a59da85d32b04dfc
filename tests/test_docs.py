"""The docs are true to the code: ARCHITECTURE.md's app graph draws exactly the imports the apps
have, the files the docs name exist, and the design they cite is in the repository."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("integrations", "queue_control", "campaigns", "tracking")
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").rglob("*.md"))]


def app_imports() -> set[tuple[str, str]]:
    edges = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                for name in names:
                    top = name.split(".")[0]
                    if top in APPS and top != app:
                        edges.add((app, top))
    return edges


def test_the_architecture_graph_draws_the_apps_imports_exactly():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    graph = re.search(r"```mermaid\n(.*?)```", text, re.S).group(1)
    drawn = set(re.findall(r"^\s*(\w+) --> (\w+)\s*$", graph, re.M))
    assert drawn == app_imports()


def test_the_files_the_docs_name_exist():
    missing = []
    for doc in DOCS:
        for path in re.findall(
            r"`((?:campaigns|campaigns_project|tracking|queue_control|integrations|tests|scripts|"
            r"benchmarks|docs)/[\w/.-]+\.(?:py|md|html|sh))`",
            doc.read_text(),
        ):
            if not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert missing == []


def test_the_design_the_docs_cite_is_in_the_repository():
    assert (ROOT / "docs" / "design.md").exists()
    for doc in [*DOCS, *ROOT.glob("*/*.py"), *ROOT.glob("tests/**/*.py")]:
        text = doc.read_text()
        assert "DESIGN" + " §" not in text, doc  # the file outside the repository
        for section in re.findall(r"design §(\d+)", text):
            assert f"## §{section} " in (ROOT / "docs" / "design.md").read_text(), (doc, section)
