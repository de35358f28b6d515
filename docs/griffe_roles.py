"""Griffe extension: Sphinx cross-reference roles in the numpydoc docstrings, as links.

The docstrings of conceptlens write references the Sphinx way (:func:`score_concepts`,
:class:`~conceptlens.heads.SparseLinearHead`, :meth:`save`), which Markdown would show
verbatim. Each role becomes a link to the object's entry in the API reference: the name is
looked up as written, then in the scope of the documented object (its class, module,
package) and at the top level of conceptlens. A name that resolves to nothing documented is
shown as code (an optional cross-reference: never a broken link).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import AliasResolutionError, CyclicAliasError, Extension, Object

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([^`<>]+)`")


def _candidates(obj: Object, target: str) -> list[str]:
    target = target.strip().removesuffix("()")
    scopes = []
    node: Any = obj
    while node is not None:
        scopes.append(node.path)
        node = node.parent
    out = [target] if "." in target else []
    out += [f"{scope}.{target}" for scope in scopes]
    out.append(f"conceptlens.{target}")
    return out


def _resolve(obj: Object, target: str) -> str | None:
    collection = obj.modules_collection
    for path in _candidates(obj, target):
        try:
            found = collection.get_member(path)
            return found.canonical_path
        except (KeyError, AliasResolutionError, CyclicAliasError):  # not there
            continue
    return None


def _replace(obj: Object, text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        tilde, target = m.groups()
        shown = target.split(".")[-1] if tilde else target
        path = _resolve(obj, target)
        if path is None:
            return f"`{shown}`"
        return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'

    return ROLE.sub(sub, text)


class SphinxRoles(Extension):
    """Rewrite Sphinx roles in every docstring of the loaded package."""

    def on_package(self, *, pkg: Object, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[Any] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or obj.is_alias:
                continue
            seen.add(id(obj))
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = _replace(obj, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias)
