"""A budget for rendering staff-edited templates: time, loop iterations and output size.

The sandbox has no include or recursion, so only `{% for %}` multiplies work (nested loops over a
few hundred characters reach billions of iterations) and only a few filters multiply output
(`floatformat` and `stringformat` with a huge precision, `ljust`/`rjust`/`center` with a huge
width). Loops are metered here, those filters refuse arguments past sane bounds, and a render
that runs over its budget stops with RenderBudgetExceeded, a message staff can act on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from time import monotonic
from typing import Any

from django.conf import settings
from django.template import Node, NodeList, defaultfilters, defaulttags
from django.template.base import Parser, Token
from django.utils.translation import gettext

MAX_PRECISION = 20  # digits after the point: more than any letter needs
MAX_WIDTH = 200  # characters of padding for ljust/rjust/center


class RenderBudgetExceeded(Exception):
    """The template was stopped: it would take too long or write too much."""


@dataclass
class Budget:
    deadline: float
    iterations_left: int
    chars_left: int

    def charge(self, *, iterations: int = 0, chars: int = 0) -> None:
        self.iterations_left -= iterations
        self.chars_left -= chars
        if self.iterations_left < 0:
            raise RenderBudgetExceeded(
                gettext("The template loops more than %(limit)s times; it was stopped.")
                % {"limit": settings.LETTER_RENDER_MAX_ITERATIONS}
            )
        if self.chars_left < 0:
            raise RenderBudgetExceeded(
                gettext("The template writes more than %(limit)s characters; it was stopped.")
                % {"limit": settings.LETTER_RENDER_MAX_CHARS}
            )
        if monotonic() > self.deadline:
            raise RenderBudgetExceeded(
                gettext("The template took more than %(limit)s seconds to render; it was stopped.")
                % {"limit": settings.LETTER_RENDER_SECONDS}
            )


_CURRENT: ContextVar[Budget | None] = ContextVar("letters_render_budget", default=None)


@contextmanager
def render_budget() -> Iterator[Budget]:
    """One budget for everything rendered inside (subject, HTML and text of one letter)."""
    current = _CURRENT.get()
    if current is not None:  # nested: share the outer budget
        yield current
        return
    budget = Budget(
        deadline=monotonic() + settings.LETTER_RENDER_SECONDS,
        iterations_left=settings.LETTER_RENDER_MAX_ITERATIONS,
        chars_left=settings.LETTER_RENDER_MAX_CHARS,
    )
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


def charge(*, iterations: int = 0, chars: int = 0) -> None:
    budget = _CURRENT.get()
    if budget is not None:
        budget.charge(iterations=iterations, chars=chars)


class _MeteredNode(Node):
    """Counts what one node inside a loop body writes."""

    def __init__(self, inner: Node) -> None:
        self.inner = inner
        self.token = inner.token
        self.origin = inner.origin

    def render_annotated(self, context: Any) -> str:
        output = str(self.inner.render_annotated(context))
        charge(chars=len(output))
        return output

    def render(self, context: Any) -> str:
        return self.render_annotated(context)


class _MeteredNodeList(NodeList):
    """ForNode walks its body once per item: each walk is one iteration of the budget."""

    def __iter__(self) -> Iterator[Node]:
        charge(iterations=1)
        return super().__iter__()


def do_for(parser: Parser, token: Token) -> Node:
    node = defaulttags.do_for(parser, token)
    node.nodelist_loop = _MeteredNodeList(
        _MeteredNode(n) for n in node.nodelist_loop if isinstance(n, Node)
    )
    return node


def _too_big(arg: Any, limit: int) -> bool:
    """Whether a filter argument writes a number over `limit` (a precision or a width)."""
    return any(len(d) > 6 or int(d) > limit for d in re.findall(r"\d+", str(arg)))


def _bounded(name: str, limit: int, func: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(value: Any, arg: Any = None) -> Any:
        if arg is not None and _too_big(arg, limit):
            raise RenderBudgetExceeded(
                gettext("The %(filter)s filter accepts at most %(limit)s, not %(arg)s.")
                % {"filter": name, "limit": limit, "arg": str(arg)[:20]}
            )
        return func(value) if arg is None else func(value, arg)

    guarded.is_safe = getattr(func, "is_safe", False)  # type: ignore[attr-defined]
    guarded.needs_autoescape = False  # type: ignore[attr-defined]
    return guarded


BOUNDED_FILTERS: dict[str, Callable[..., Any]] = {
    "floatformat": _bounded("floatformat", MAX_PRECISION, defaultfilters.floatformat),
    "stringformat": _bounded("stringformat", MAX_PRECISION, defaultfilters.stringformat),
    "ljust": _bounded("ljust", MAX_WIDTH, defaultfilters.ljust),
    "rjust": _bounded("rjust", MAX_WIDTH, defaultfilters.rjust),
    "center": _bounded("center", MAX_WIDTH, defaultfilters.center),
}
