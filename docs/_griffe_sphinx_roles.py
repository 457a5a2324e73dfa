"""A Griffe extension for signalprop's reference: Sphinx roles in docstrings become links.

signalprop's docstrings are Google style and name other objects the Sphinx way
(``:func:`fans_for```, ``:class:`~signalprop.Monitor```). This rewrites each role as
an optional autoref to the object it names, resolved from the docstring's own scope
the way Sphinx would: the page links it where the reference documents that object,
and shows plain code where it does not (a private helper), without a warning.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|mod|exc|obj|const):`(~?)([\w.]+)`")


def _target(obj: griffe.Object, name: str, loader: griffe.GriffeLoader) -> str | None:
    """The canonical path of what ``name`` means in ``obj``'s docstring, if found."""
    head, _, rest = name.partition(".")
    path: str | None = None
    scope: griffe.Object | None = obj
    while scope is not None and path is None:
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError):
            scope = scope.parent
    if path is None:
        path = head
    full = f"{path}.{rest}" if rest else path
    try:
        found = loader.modules_collection[full]
        return str(found.final_target.canonical_path if found.is_alias else found.canonical_path)
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring of the package as an optional autoref."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **_: Any) -> None:
        self._walk(pkg, loader, set())

    def _walk(self, obj: griffe.Object, loader: griffe.GriffeLoader, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            docstring = obj.docstring
            docstring.value = ROLE.sub(lambda m: self._link(obj, m, loader), docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, loader, seen)  # type: ignore[arg-type]

    @staticmethod
    def _link(obj: griffe.Object, match: re.Match[str], loader: griffe.GriffeLoader) -> str:
        short, name = match.groups()
        shown = html.escape(name.rsplit(".", 1)[-1] if short else name)
        target = _target(obj, name, loader)
        if target is None:
            return f"<code>{shown}</code>"
        identifier = html.escape(target)
        return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'
