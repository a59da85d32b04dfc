"""The campaigns app is acyclic, and Celery is touched at its two ends only.

Imports go one way: the state moves (transitions) below the pipeline, the pipeline below the
services that start it and the runner that works it, the Celery tasks on top; dispatch.py sends
the wake-up messages by task name from the bottom, so nothing below the tasks imports them."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "campaigns"


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(modules of the app it imports, anywhere in the file, function level included; top-level
    packages it imports)."""
    own, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    own.add(node.module.split(".")[0])
                else:
                    own.update(alias.name for alias in node.names)
            elif node.module:
                if node.module.startswith("campaigns."):
                    own.add(node.module.split(".")[1])
                external.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("campaigns."):
                    own.add(alias.name.split(".")[1])
                external.add(alias.name.split(".")[0])
    return own, external


def graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in APP.glob("*.py")}
    return {name: imports_of(path)[0] & set(modules) for name, path in modules.items()}


def test_the_campaigns_app_imports_have_no_cycle():
    edges = graph()
    visiting, done, cycles = set(), set(), []

    def visit(module: str, trail: list[str]) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append(trail[trail.index(module) :] + [module])
            return
        visiting.add(module)
        for target in sorted(edges[module]):
            visit(target, [*trail, module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(edges):
        visit(module, [])
    assert cycles == []


def test_the_layers_go_one_way():
    edges = graph()
    below = {
        "transitions": {"pipeline", "services", "jobs", "runner", "tasks"},
        "pipeline": {"services", "jobs", "runner", "tasks", "sweeper"},
        "dispatch": {"pipeline", "jobs", "runner", "services", "tasks"},
    }
    for module, above in below.items():
        assert not edges[module] & above, f"{module} imports {edges[module] & above}"


def test_only_the_tasks_and_dispatch_touch_celery():
    touching = {
        path.stem
        for path in APP.glob("*.py")
        if "celery" in imports_of(path)[1] or "campaigns_project.celery" in path.read_text()
    }
    assert touching == {"tasks", "dispatch"}
