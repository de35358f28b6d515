"""Griffe extension: Sphinx cross-reference roles in the numpydoc docstrings, as links.

The docstrings of conceptlens write references the Sphinx way (:func:`score_concepts`,
:class:`~conceptlens.heads.SparseLinearHead`, :meth:`save`), which Markdown would show
verbatim. Each role becomes a link to the object's entry in the API reference: the name is
looked up as written, then in the scope of the documented object (its class, module,
package) and at the top level of conceptlens. A name that resolves to nothing documented is
shown as code (an optional cross-reference: never a broken link).
"""

from __future__ import annotations

import importlib
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


def _lookup(obj: Object, path: str) -> Object | None:
    """``path`` in the loaded packages, inherited class members included."""
    collection = obj.modules_collection
    try:
        return collection.get_member(path)
    except (KeyError, AliasResolutionError, CyclicAliasError):
        pass
    parent, _, name = path.rpartition(".")
    try:
        owner = collection.get_member(parent) if parent else None
        return owner.all_members[name] if owner is not None and owner.is_class else None
    except (KeyError, AliasResolutionError, CyclicAliasError):
        return None


def _lazy(target: str) -> str | None:
    """Where a lazily imported name (a module ``__getattr__``) of conceptlens is defined."""
    module, _, name = target.rpartition(".")
    if not module.startswith("conceptlens"):
        return None
    try:
        value = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    where = getattr(value, "__module__", None)
    return f"{where}.{value.__qualname__}" if where and hasattr(value, "__qualname__") else None


def _resolve(obj: Object, target: str) -> str | None:
    for path in _candidates(obj, target):
        found = _lookup(obj, path)
        if found is not None:
            try:
                return found.canonical_path
            except (AliasResolutionError, CyclicAliasError):
                continue
    defined = _lazy(target)
    return defined if defined is not None and _lookup(obj, defined) is not None else None


def _replace(obj: Object, text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        tilde, target = m.groups()
        target = re.sub(r"\s+", "", target)  # a role broken across lines
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
