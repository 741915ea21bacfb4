"""The sandbox letter templates render in: staff edit template bodies, so they get a dedicated
Engine with no loaders, no libraries, a short list of tags and filters, metered loops and bounded
filters (letters/render_budget.py), and a context of plain strings, numbers and lists of dicts,
never model instances."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, cast

from django.conf import settings
from django.template import Context, Engine, Library, defaultfilters, defaulttags

from letters import render_budget

# No load/include/extends/block (no way to reach other templates or libraries), no url/csrf/debug
# (no view of the project), no autoescape/safe (banners and hostnames are untrusted).
SANDBOX_TAGS = (
    "comment", "cycle", "filter", "firstof", "for", "if", "ifchanged", "now", "regroup",
    "spaceless", "templatetag", "verbatim", "widthratio", "with",
)  # fmt: skip
UNSAFE_FILTERS = {"safe", "safeseq", "pprint", "force_escape", "json_script", "urlize",
                  "urlizetrunc"}  # fmt: skip

register = Library()  # the sandbox's only builtins (Engine imports this module's `register`)
for _name in SANDBOX_TAGS:
    register.tags[_name] = defaulttags.register.tags[_name]
for _name, _filter in defaultfilters.register.filters.items():
    if _name not in UNSAFE_FILTERS:
        register.filters[_name] = _filter
# Loops are metered and the filters that can write megabytes are bounded (render_budget.py).
register.tag("for", render_budget.do_for)
for _name, _filter in render_budget.BOUNDED_FILTERS.items():
    register.filter(_name, _filter, is_safe=True)


class _SandboxEngine(Engine):
    default_builtins: ClassVar[list[str]] = []  # not even loader_tags


@lru_cache(maxsize=2)
def sandbox_engine(autoescape: bool = True) -> Engine:
    return _SandboxEngine(
        dirs=[],
        app_dirs=False,
        loaders=[],
        libraries={},
        builtins=["letters.sandbox"],
        autoescape=autoescape,
        string_if_invalid="",
        debug=False,
    )


def sandbox_render(source: str, context: dict[str, Any], *, autoescape: bool = True) -> str:
    """Raises RenderBudgetExceeded when the template runs too long or writes too much."""
    template = sandbox_engine(autoescape).from_string(source)
    with render_budget.render_budget():
        output = template.render(Context(context, autoescape=autoescape))
    if len(output) > settings.LETTER_RENDER_MAX_CHARS:
        render_budget.charge(chars=len(output))  # over the cap on its own: says so
    return output


def sandbox_check(source: str) -> str | None:
    """The syntax error a template body has in the sandbox, or None."""
    from django.template import TemplateSyntaxError

    try:
        sandbox_engine(True).from_string(source)
    except TemplateSyntaxError as exc:
        return str(exc)
    return None


# What each field is, for the report of a field that would print nothing.
FIELD_SOURCES = {
    "agency": "the partner's agency name",
    "country_name": "the partner's country name",
    "signatory_name": "the partner's signatory name",
    "signatory_title": "the partner's signatory title (dropped when it only repeats the agency)",
    "reply_to": "the partner's reply-to address",
    "agency_website": "the partner's website",
}


def blank_fields(source: str, context: dict[str, Any]) -> list[str]:
    """Fields the template prints that would come out empty with this context, or that do not
    exist at all (a typo prints nothing too), as sentences for the template's page."""
    from django.template.base import Variable, VariableNode
    from django.template.defaulttags import ForNode, WithNode

    try:
        template = sandbox_engine(True).from_string(source)
    except Exception:  # the sandbox check reports syntax errors on its own
        return []
    nodelist = template.nodelist
    bound = {"forloop"}
    for loop in nodelist.get_nodes_by_type(ForNode):
        bound.update(cast(ForNode, loop).loopvars)
    for with_node in nodelist.get_nodes_by_type(WithNode):
        bound.update(cast(WithNode, with_node).extra_context)
    problems: list[str] = []
    seen: set[str] = set()
    for node in nodelist.get_nodes_by_type(VariableNode):
        expression = cast(VariableNode, node).filter_expression
        var = expression.var
        if not isinstance(var, Variable) or not var.lookups or var.lookups[0] in bound:
            continue
        name = var.lookups[0]
        if name in seen or any(
            f[0].__name__ in ("default", "default_if_none") for f in expression.filters
        ):
            continue
        seen.add(name)
        if name not in context:
            problems.append(f"{{{{ {var.var} }}}} is not a field letters have: it prints nothing.")
        elif context[name] in ("", None, []):
            what = FIELD_SOURCES.get(name, "this field")
            problems.append(f"{{{{ {name} }}}} would print nothing: {what} is empty.")
    return problems
