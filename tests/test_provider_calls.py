"""Every provider call is behind the breaker: outside integrations (the clients) and the guard, no
module calls a provider client's method itself. It hands the method to guarded_call (or
call_with_heartbeat inside it), or to a BatchRun as its `call` (each call then under
call_permit); and every client is opened in a `with` block, so it is closed."""

import ast
from pathlib import Path

from integrations.providers import REAL, SANDBOXES

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("campaigns", "tracking", "queue_control", "campaigns_project")
ALLOWED = {ROOT / "queue_control" / "guard.py"}
# Client attributes that are not calls to the provider.
NOT_CALLS = {"close", "from_settings", "auth_headers", "error_for", "retry_delay", "default_model", "path", "service"}
OPENERS = {"get_provider", "get_enricher"}


def provider_methods() -> set[str]:
    names = set()
    for cls in (*REAL.values(), *SANDBOXES.values()):
        names.update(name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name)))
    return names - NOT_CALLS


def product_modules() -> list[Path]:
    paths = [p for app in PRODUCT for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]
    return [p for p in paths if p not in ALLOWED]


def batch_calls(tree: ast.AST) -> tuple[set[int], set[str]]:
    """Lambdas (by id) and function names passed as BatchRun(call=...)."""
    lambdas, names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "BatchRun":
            for keyword in node.keywords:
                if keyword.arg == "call":
                    if isinstance(keyword.value, ast.Lambda):
                        lambdas.add(id(keyword.value))
                    elif isinstance(keyword.value, ast.Name):
                        names.add(keyword.value.id)
    return lambdas, names


def _is_opener(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call) and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) in OPENERS
    )


def clients(tree: ast.AST) -> set[str]:
    """Names bound to a provider client: `with get_provider(...) as name`, `name = get_provider(...)`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if _is_opener(item.context_expr) and isinstance(item.optional_vars, ast.Name):
                    names.add(item.optional_vars.id)
        elif isinstance(node, ast.Assign) and _is_opener(node.value):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def violations(path: Path, methods: set[str]) -> list[str]:
    tree = ast.parse(path.read_text())
    lambdas, names = batch_calls(tree)
    bound = clients(tree)
    opened_in_with = {
        id(item.context_expr)
        for node in ast.walk(tree)
        if isinstance(node, ast.With | ast.AsyncWith)
        for item in node.items
    }
    found = []

    def visit(node: ast.AST, scope: ast.AST | None) -> None:
        if isinstance(node, ast.Call):
            func = node.func
            on_client = isinstance(func, ast.Attribute) and (
                _is_opener(func.value) or (isinstance(func.value, ast.Name) and func.value.id in bound)
            )
            if on_client and func.attr in methods:
                guarded = scope is not None and (
                    id(scope) in lambdas or (isinstance(scope, ast.FunctionDef) and scope.name in names)
                )
                if not guarded:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls .{func.attr}() outside the guard")
            if _is_opener(node) and id(node) not in opened_in_with:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} opens a client outside a with block")
        inner = node if isinstance(node, ast.Lambda | ast.FunctionDef | ast.AsyncFunctionDef) else scope
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, None)
    return found


def test_the_provider_methods_are_known():
    assert {"campaign_analytics", "add_leads", "create_campaign", "fetch_leads", "verify", "personalize"} <= (
        provider_methods()
    )


def test_no_module_outside_integrations_and_the_guard_calls_a_provider_directly():
    methods = provider_methods()
    found = [line for path in product_modules() for line in violations(path, methods)]
    assert found == []


def test_the_check_finds_a_direct_call(tmp_path):
    """The rule catches what it is for: the unguarded, unclosed analytics read this issue removed."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def read(campaign):\n"
        "    return get_provider('instantly').campaign_analytics(campaign_id=campaign.instantly_campaign_id)\n"
    )
    good = tmp_path / "good.py"
    good.write_text(
        "def read(campaign):\n"
        "    with get_provider('instantly') as instantly:\n"
        "        return guarded_call('instantly', instantly.campaign_analytics, campaign_id='x')\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert len(violations(bad, provider_methods())) == 2
        assert violations(good, provider_methods()) == []
    finally:
        ROOT = saved
