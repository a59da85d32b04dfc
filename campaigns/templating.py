"""The template language of campaign subjects and bodies: Django templates cut down to a small,
safe set, and rendered within bounds.

Operators write these templates, and every lead's data goes through them, so:

- only the tags and filters below exist (no include, extends, load, debug, ssi, lorem, url, csrf
  or anything else that reads files, settings or the URLconf; no autoescape off or |safe, so a
  lead's fields are always escaped in HTML mails);
- a render is bounded: its output (RENDER_MAX_CHARS, checked as each piece is produced, not
  after the fact) and its work (RENDER_MAX_STEPS: nodes rendered plus loop iterations), so a
  36-byte template cannot make a 5 MB mail and nested loops cannot hold a worker or a request;
- a template is checked when it is saved (`campaign_templates_check`): it must compile, name
  only known variables, and render against a sample lead within the bounds; an error names the
  field and the line.

The campaigns app owns this (campaigns.models validates with it on save); tracking's
`render_content` renders every message, real or test, through `template_render` below.
"""

import functools
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.template import (
    Context,
    Engine,
    Library,
    Node,
    TemplateSyntaxError,
    VariableDoesNotExist,
    defaultfilters,
    defaulttags,
    loader_tags,
)
from django.template.defaulttags import ForNode

ALLOWED_TAGS = ("comment", "cycle", "firstof", "for", "if", "now", "spaceless", "templatetag", "verbatim", "with")
ALLOWED_FILTERS = (
    "capfirst", "cut", "date", "default", "default_if_none", "divisibleby", "escape", "first", "force_escape",
    "join", "last", "length", "linebreaks", "linebreaksbr", "lower", "pluralize", "slice", "slugify", "striptags",
    "time", "timesince", "timeuntil", "title", "truncatechars", "truncatechars_html", "truncatewords",
    "truncatewords_html", "upper", "urlencode", "urlize", "urlizetrunc", "wordcount", "wordwrap", "yesno",
)  # fmt: skip

# The variables a template may use: a lead's fields, what enrichment wrote, and the sample
# values the check renders with (also a test send's values when the campaign has no lead yet).
SAMPLE_LEAD = {
    "email": "sample@example.com",
    "first_name": "Sam",
    "last_name": "Sample",
    "full_name": "Sam Sample",
    "title": "Head of Sales",
    "company": "Example Inc.",
    "company_domain": "example.com",
    "linkedin_url": "",
    "phone": "",
    "enrichment": {},
    "personalization": "",
}
# A subject is one header line (RFC 5322: at most 998 characters); the model's field says the same.
SUBJECT_MAX_CHARS = 998


class RenderLimitExceeded(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.lineno: int | None = None


class UnknownVariable(Exception):
    """Raised only while checking a template: a name that is neither a lead variable nor set by
    the template itself (a loop or a `with`)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name
        self.lineno: int | None = None


@dataclass
class Budget:
    """What one render may still produce and do. One budget covers a whole message (subject and
    body share it)."""

    chars: int
    steps: int

    @classmethod
    def for_message(cls) -> "Budget":
        return cls(chars=settings.CAMPAIGN_RENDER_MAX_CHARS, steps=settings.CAMPAIGN_RENDER_MAX_STEPS)

    def spend_steps(self, count: int) -> None:
        self.steps -= count
        if self.steps < 0:
            raise RenderLimitExceeded(
                f"The template does too much work (more than {settings.CAMPAIGN_RENDER_MAX_STEPS} steps); "
                "look for loops inside loops."
            )

    def spend_chars(self, count: int) -> None:
        self.chars -= count
        if self.chars < 0:
            raise RenderLimitExceeded(
                f"The rendered message is larger than {settings.CAMPAIGN_RENDER_MAX_CHARS} characters."
            )


_BUDGET: ContextVar[Budget | None] = ContextVar("campaign_render_budget", default=None)


def _bounded_filter(func):
    """A filter whose result counts against the render's size: no chain of filters (each
    |force_escape multiplies by up to five) can build a value larger than one message."""

    @functools.wraps(func)
    def bounded(*args, **kwargs):
        result = func(*args, **kwargs)
        if isinstance(result, str) and len(result) > settings.CAMPAIGN_RENDER_MAX_CHARS:
            raise RenderLimitExceeded(
                f"The |{func.__name__} filter made a value larger than {settings.CAMPAIGN_RENDER_MAX_CHARS} characters."
            )
        return result

    return bounded


register = Library()
_DJANGO_TAGS = {**defaulttags.register.tags, **loader_tags.register.tags}
for _name in ALLOWED_TAGS:
    register.tag(_name, _DJANGO_TAGS[_name])
for _name in ALLOWED_FILTERS:
    _func = defaultfilters.register.filters[_name]
    register.filter(
        _name,
        _bounded_filter(_func),
        is_safe=getattr(_func, "is_safe", False),
        needs_autoescape=getattr(_func, "needs_autoescape", False),
        expects_localtime=getattr(_func, "expects_localtime", False),
    )


class CampaignTemplateEngine(Engine):
    # Django's own tags and filters are not loaded at all: this library is the whole language.
    default_builtins = ["campaigns.templating"]


ENGINE = CampaignTemplateEngine(loaders=[], libraries={}, autoescape=True)


class _LeadContext(Context):
    """A name that is not set resolves to nothing, as in Django, but never falls back to the
    context object's own attributes (`{{ template.source }}` and the like)."""

    def __getitem__(self, key):
        for d in reversed(self.dicts):
            if key in d:
                return d[key]
        raise VariableDoesNotExist(key)


class _CheckingContext(Context):
    def __getitem__(self, key):
        for d in reversed(self.dicts):
            if key in d:
                return d[key]
        raise UnknownVariable(key)


class _Sequence:
    """A `for` tag's sequence that charges one step per iteration before the loop starts."""

    def __init__(self, expression) -> None:
        self.expression = expression

    def resolve(self, context, ignore_failures=False):
        values = self.expression.resolve(context, ignore_failures=ignore_failures)
        if values is not None and not hasattr(values, "__len__"):
            values = list(values)
        budget = _BUDGET.get()
        if budget is not None and values is not None:
            budget.spend_steps(len(values))
        return values

    def __str__(self) -> str:
        return str(self.expression)


def _annotate(exc: RenderLimitExceeded | UnknownVariable, node: Node) -> None:
    if getattr(exc, "lineno", True) is None:  # the innermost node names the line
        token = getattr(node, "token", None)
        exc.lineno = getattr(token, "lineno", None)


def _bound(node: Node) -> None:
    """Make one compiled node charge the budget each time it renders: a step, and its output if
    it is a leaf (text, a variable, a leaf tag). Containers only join their children's output,
    which the children already paid for."""
    render = node.render_annotated
    leaf = not any(getattr(node, attr, None) for attr in node.child_nodelists)

    def render_annotated(context):
        budget = _BUDGET.get()
        try:
            if budget is not None:
                budget.spend_steps(1)
            output = cast(str, render(context))  # the stubs say int | str; a node renders a str
            if budget is not None and leaf:
                budget.spend_chars(len(output))
            return output
        except (RenderLimitExceeded, UnknownVariable) as exc:
            _annotate(exc, node)
            raise

    node.render_annotated = render_annotated  # type: ignore[method-assign]  # wrapped on this node only
    if isinstance(node, ForNode):
        node.sequence = _Sequence(node.sequence)  # type: ignore[assignment]  # stands in for the FilterExpression


def _line_of(exc: Exception) -> int | None:
    token = getattr(exc, "token", None)
    return getattr(token, "lineno", None)


def _syntax_message(exc: TemplateSyntaxError) -> str:
    token = getattr(exc, "token", None)
    message = str(exc)
    if message.startswith("Invalid filter: "):
        name = message.removeprefix("Invalid filter: ").strip("'")
        if name in defaultfilters.register.filters:
            return f"The |{name} filter is not allowed in campaign templates. Allowed: {', '.join(ALLOWED_FILTERS)}."
        return f"Unknown filter |{name}. Allowed: {', '.join(ALLOWED_FILTERS)}."
    if message.startswith("Invalid block tag") and token is not None:
        command = token.contents.split()[0] if token.contents.split() else ""
        if command in _DJANGO_TAGS and command not in ALLOWED_TAGS:
            allowed = ", ".join(ALLOWED_TAGS)
            return f"The {{% {command} %}} tag is not allowed in campaign templates. Allowed: {allowed}."
        if command not in _DJANGO_TAGS and not command.startswith("end") and command not in ("else", "elif", "empty"):
            return f"Unknown tag {{% {command} %}}. Allowed: {', '.join(ALLOWED_TAGS)}."
    return message


def _error(field: str, line: int | None, message: str) -> ValidationError:
    prefix = f"Line {line}: " if line else ""
    return ValidationError({field: [f"{prefix}{message}"]})


def template_compile(source: str, *, field: str):
    """The compiled template, each node bounded; ValidationError naming the field and the line."""
    try:
        return _compiled(source)
    except TemplateSyntaxError as exc:
        raise _error(field, _line_of(exc), _syntax_message(exc)) from exc


@lru_cache(maxsize=128)
def _compiled(source: str):
    """One compiled template per source text: a send batch renders the same two templates for
    every recipient, and compiling them costs more than rendering them. Safe to share: a Template
    renders in any thread, and each render's budget travels in a context variable."""
    template = ENGINE.from_string(source)
    for node in template.nodelist.get_nodes_by_type(Node):
        _bound(node)
    return template


def template_render(template, context: dict, *, field: str, autoescape: bool, budget: Budget, check=False) -> str:
    """Render within `budget`; ValidationError naming the field (and the line) when a bound is
    exceeded or, with check=True, when the template names an unknown variable."""
    context_class = _CheckingContext if check else _LeadContext
    token = _BUDGET.set(budget)
    try:
        return template.render(context_class(context, autoescape=autoescape))
    except RenderLimitExceeded as exc:
        raise _error(field, exc.lineno, exc.message) from exc
    except UnknownVariable as exc:
        known = ", ".join(sorted(SAMPLE_LEAD))
        raise _error(field, exc.lineno, f"Unknown variable {{{{ {exc.name} }}}}. Known: {known}.") from exc
    finally:
        _BUDGET.reset(token)


def campaign_templates_check(*, subject_template: str, body_template: str) -> None:
    """Compile both templates and render them against the sample lead, within the bounds of a
    message. Raises one ValidationError naming every field that fails, with its line."""
    errors: dict[str, list[str]] = {}
    limits = {"subject_template": SUBJECT_MAX_CHARS, "body_template": settings.CAMPAIGN_BODY_TEMPLATE_MAX_CHARS}
    for field, source in (("subject_template", subject_template), ("body_template", body_template)):
        if len(source) > limits[field]:
            errors[field] = [f"At most {limits[field]} characters (this one has {len(source)})."]
            continue
        try:
            template = template_compile(source, field=field)
            template_render(
                template, dict(SAMPLE_LEAD), field=field, autoescape=True, budget=Budget.for_message(), check=True
            )
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
