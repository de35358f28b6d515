"""Concept banks: the file format (schema version 1), validation, load/save, merge, subset.

A bank is one YAML or JSON file. It is parsed with ``yaml.safe_load`` into frozen
dataclasses; every schema error is a :class:`~conceptlens.exceptions.BankError` that
names the file, the concept (by name or index) and the field, and says how to fix it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import os
import re
import reprlib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from conceptlens._io import NoAliasLoader, atomic_write_text, user_path
from conceptlens._text import fills_once
from conceptlens.exceptions import BankError, ConfigError, MissingFileError, UnknownNameError

__all__ = [
    "SCHEMA_VERSION",
    "PROVENANCE_KINDS",
    "Concept",
    "ConceptBank",
    "list_banks",
    "load_bank",
    "shipped_bank_dirs",
    "validate_bank_file",
]

SCHEMA_VERSION = 1
PROVENANCE_KINDS = ("curated", "llm", "retrieved")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_GROUP_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_BANK_KEYS_REQUIRED = ("schema_version", "id", "version", "classes", "concepts")
_BANK_KEYS_OPTIONAL = (
    "name",
    "domain",
    "modality",
    "description",
    "reference_prompts",
    "templates",
    "citations",
)
_CONCEPT_KEYS_REQUIRED = ("name", "prompts", "group")
_CONCEPT_KEYS_OPTIONAL = ("question", "classes", "provenance", "description")
_PROVENANCE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind: (required fields, optional fields)
    "curated": ((), ("citation", "note", "priors")),
    "llm": (
        ("model", "prompt_hash", "date"),
        ("family", "class", "endpoint", "note", "priors"),
    ),
    "retrieved": (
        ("document", "passage", "score"),
        ("query", "class", "method", "note", "priors"),
    ),
}
_MAX_PROMPT_CHARS = 300


_MAX_FILE_BYTES = 20_000_000
_MAX_DEPTH = 32
_BRIEF_CHARS = 80


def _brief(value: object) -> str:
    """A short repr for error messages: never a whole (possibly huge) structure."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = _BRIEF_CHARS
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 4
    r.maxlevel = 2
    text = r.repr(value)
    return text if len(text) <= 2 * _BRIEF_CHARS else text[: 2 * _BRIEF_CHARS] + "...'"


def _hidden_char(text: str) -> str | None:
    """The first character of ``text`` that a reader cannot see or that reorders the text.

    Control characters other than newline and tab (ANSI escapes, carriage returns, NUL),
    format characters (bidirectional overrides such as U+202E, zero-width spaces and
    joiners, byte-order marks), private-use, surrogate and unassigned code points.
    """
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] == "C" and ch not in "\n\t":
            return ch
    return None


def _check_visible_text(value: Any, where: _Where, path: str = "") -> None:
    """Raise :class:`BankError` where a string anywhere in ``value`` hides characters.

    A bank is read by people (``bank show``, PDF reports) and by the text encoder; text
    that renders differently from what is stored (``"evil\u202etxt"``, an ANSI escape
    that recolours a terminal, a zero-width space that makes two names look equal) is
    refused, naming the field and the code point.
    """
    if isinstance(value, str):
        ch = _hidden_char(value)
        if ch is not None:
            name = unicodedata.name(ch, "a control character")
            concept = None
            field = path or None
            m = re.match(r"concepts\[(\d+)\]\.?(.*)", path)
            if m:
                concept, field = f"#{m.group(1)}", m.group(2) or None
            raise where.error(
                f"contains the invisible or control character U+{ord(ch):04X} ({name}) in "
                f"{_brief(value)}; remove it (retype the text if it was pasted)",
                concept=concept,
                field=field,
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            _check_visible_text(key, where, sub)
            _check_visible_text(item, where, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_visible_text(item, where, f"{path}[{i}]")


def _same_spelling(text: str) -> str:
    """``text`` folded for comparison: Unicode NFKC, case and runs of whitespace."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def spelling_twins(classes: Iterable[str]) -> tuple[str, str] | None:
    """The first two class names that differ only in case, spacing or Unicode form."""
    folded: dict[str, str] = {}
    for c in classes:
        key = _same_spelling(c)
        if key in folded and folded[key] != c:
            return folded[key], c
        folded.setdefault(key, c)
    return None


def check_distinct_classes(classes: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for class names a bank could not hold (given twice, or
    differing only in case, spacing or Unicode form), before any work is done on them."""
    twins = spelling_twins(classes)
    if twins is None and len(set(classes)) != len(classes):
        dup = next(c for c in classes if list(classes).count(c) > 1)
        twins = (dup, dup)
    if twins is not None:
        raise ConfigError(
            f"class names {twins[0]!r} and {twins[1]!r} are the same class (they differ at "
            "most in case, spacing or Unicode form); give each class once, in one spelling"
        )


def _is_extension(key: object) -> bool:
    return isinstance(key, str) and key.startswith("x_")


class _Where:
    """Builds error messages that name the file, the concept and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(
        self, msg: str, *, concept: str | None = None, field: str | None = None
    ) -> BankError:
        parts = [self.source]
        if concept is not None:
            parts.append(f"concept {concept}")
        if field is not None:
            parts.append(f"field '{field}'")
        return BankError(": ".join(parts) + ": " + msg)


def _check_keys(
    data: Mapping[str, Any],
    required: Sequence[str],
    optional: Sequence[str],
    where: _Where,
    concept: str | None,
    what: str,
) -> None:
    for key in required:
        if key not in data:
            raise where.error(
                f"missing required field; add `{key}: ...` to the {what}",
                concept=concept,
                field=key,
            )
    allowed = set(required) | set(optional)
    for key in data:
        if key not in allowed and not _is_extension(key):
            raise where.error(
                f"unknown field in the {what}; allowed fields are {sorted(allowed)} "
                "(prefix custom fields with 'x_')",
                concept=concept,
                field=str(key),
            )


def _str_list(
    value: Any, where: _Where, concept: str | None, field: str, *, allow_empty: bool = False
) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or (not value and not allow_empty):
        raise where.error(
            f"must be a non-empty list of strings, got {_brief(value)}; "
            f'write for example `{field}: ["..."]`',
            concept=concept,
            field=field,
        )
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise where.error(
                f"item {i} must be a non-empty string, got {_brief(item)}",
                concept=concept,
                field=field,
            )
        out.append(item.strip())
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Concept:
    """One concept of a bank.

    Parameters
    ----------
    name : str
        Identifier, lowercase snake_case, unique in its bank.
    prompts : tuple of str
        One or more text prompts; their embeddings are averaged when scoring.
    group : str
        Free lowercase word: ``morphology``, ``colour``, ``structure``, ``artifact``,
        ``device``, ``demographic``, ``finding``...
    question : str or None
        Optional yes/no form ("Is there a blue-white veil?"), as KnoBo uses.
    classes : dict of str to int
        Optional class associations, each in {-1, 0, 1} (a prior on head weights).
    provenance : dict
        ``{kind: curated, citation}``, ``{kind: llm, model, prompt_hash, date}`` or
        ``{kind: retrieved, document, passage, score}``.
    description : str or None
        Optional free-text note for reviewers.
    """

    name: str
    prompts: tuple[str, ...]
    group: str
    question: str | None = None
    classes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def positive_classes(self) -> tuple[str, ...]:
        """Classes this concept is associated with (prior +1)."""
        return tuple(c for c, v in self.classes.items() if v == 1)

    def to_dict(self) -> dict[str, Any]:
        """Return the concept as plain data in the file's field order."""
        out: dict[str, Any] = {"name": self.name, "prompts": list(self.prompts)}
        out["group"] = self.group
        if self.question is not None:
            out["question"] = self.question
        if self.description is not None:
            out["description"] = self.description
        if self.classes:
            out["classes"] = dict(self.classes)
        if self.provenance:
            out["provenance"] = dict(self.provenance)
        out.update(dict(self.extra))
        return out


def _parse_provenance(
    value: Any, citations: Mapping[str, str], where: _Where, concept: str
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(
            "must be a mapping such as `{kind: curated, citation: key}`",
            concept=concept,
            field="provenance",
        )
    kind = value.get("kind")
    if kind not in _PROVENANCE_FIELDS:
        raise where.error(
            f"kind must be one of {list(PROVENANCE_KINDS)}, got {_brief(kind)}",
            concept=concept,
            field="provenance.kind",
        )
    required, optional = _PROVENANCE_FIELDS[kind]
    for key in required:
        if key not in value or value[key] in (None, ""):
            raise where.error(
                f"provenance of kind '{kind}' needs `{key}`; required: {list(required)}",
                concept=concept,
                field=f"provenance.{key}",
            )
    allowed = {"kind", *required, *optional}
    for key in value:
        if key not in allowed and not _is_extension(key):
            raise where.error(
                f"unknown field for provenance kind '{kind}'; allowed: {sorted(allowed)}",
                concept=concept,
                field=f"provenance.{key}",
            )
    if kind == "curated" and "citation" in value:
        keys = value["citation"]
        keys = [keys] if isinstance(keys, str) else keys
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise where.error(
                "must be a citation key or a list of keys",
                concept=concept,
                field="provenance.citation",
            )
        for key in keys:
            if key not in citations:
                raise where.error(
                    f"citation key {_brief(key)} is not defined in the bank's `citations` "
                    f"(defined: {sorted(citations)}); add it there",
                    concept=concept,
                    field="provenance.citation",
                )
    if kind == "retrieved":
        score = value["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise where.error(
                f"must be a number, got {_brief(score)}",
                concept=concept,
                field="provenance.score",
            )
    if kind == "llm":
        for key in ("model", "prompt_hash", "date"):
            if not isinstance(value[key], str):
                raise where.error(
                    'must be a string (quote dates: date: "2026-01-31"), got '
                    f"{_brief(value[key])}",
                    concept=concept,
                    field=f"provenance.{key}",
                )
    return dict(value)


def _parse_concept(
    i: int, raw: Any, classes: Sequence[str], citations: Mapping[str, str], where: _Where
) -> Concept:
    label = f"#{i}"
    if not isinstance(raw, dict):
        raise where.error("must be a mapping with name, prompts and group", concept=label)
    name = raw.get("name")
    if isinstance(name, str):
        label = f"#{i} ({_brief(name)})"
    _check_keys(raw, _CONCEPT_KEYS_REQUIRED, _CONCEPT_KEYS_OPTIONAL, where, label, "concept")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise where.error(
            f"must be lowercase snake_case (letters, digits, '_', starting with a letter, "
            f"at most 64 chars), got {_brief(name)}; e.g. `blue_white_veil`",
            concept=label,
            field="name",
        )
    prompts = _str_list(raw["prompts"], where, label, "prompts")
    for p in prompts:
        if len(p) > _MAX_PROMPT_CHARS:
            raise where.error(
                f"a prompt has {len(p)} characters; keep prompts under {_MAX_PROMPT_CHARS}",
                concept=label,
                field="prompts",
            )
    group = raw["group"]
    if not isinstance(group, str) or not _GROUP_RE.match(group):
        raise where.error(
            "must be one lowercase word such as colour, structure or artifact, got "
            f"{_brief(group)}",
            concept=label,
            field="group",
        )
    question = raw.get("question")
    if question is not None and (not isinstance(question, str) or not question.strip()):
        raise where.error("must be a non-empty string", concept=label, field="question")
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise where.error("must be a string", concept=label, field="description")
    cls_map = raw.get("classes") or {}
    if not isinstance(cls_map, dict):
        raise where.error(
            "must be a mapping class -> -1/0/1, e.g. `{melanoma: 1, nevus: -1}`",
            concept=label,
            field="classes",
        )
    for key, val in cls_map.items():
        if key not in classes:
            raise where.error(
                f"class {_brief(key)} is not one of the bank's classes {list(classes)}",
                concept=label,
                field=f"classes.{key}",
            )
        if isinstance(val, bool) or val not in (-1, 0, 1):
            raise where.error(
                f"class association must be -1, 0 or 1, got {_brief(val)}",
                concept=label,
                field=f"classes.{key}",
            )
    prov_raw = raw.get("provenance")
    if prov_raw is None:
        raise where.error(
            "every concept needs a provenance: {kind: curated, citation: KEY}, "
            "{kind: llm, model, prompt_hash, date} or {kind: retrieved, document, passage, score}",
            concept=label,
            field="provenance",
        )
    provenance = _parse_provenance(prov_raw, citations, where, label)
    extra = {k: v for k, v in raw.items() if _is_extension(k)}
    return Concept(
        name=name,
        prompts=prompts,
        group=group,
        question=question.strip() if isinstance(question, str) else None,
        classes={str(k): int(v) for k, v in cls_map.items()},
        provenance=provenance,
        description=description,
        extra=extra,
    )


@dataclasses.dataclass(frozen=True)
class ConceptBank:
    """A versioned, validated set of concepts with provenance (schema version 1).

    Load one with :func:`load_bank`; build one from plain data with
    :meth:`ConceptBank.from_dict`.

    Examples
    --------
    >>> bank = ConceptBank.from_dict({
    ...     "schema_version": 1, "id": "toy", "version": "0.1.0", "classes": ["a", "b"],
    ...     "concepts": [{"name": "red_dots", "prompts": ["red dots"], "group": "colour",
    ...                   "classes": {"a": 1}, "provenance": {"kind": "curated"}}]})
    >>> bank.names
    ('red_dots',)
    """

    id: str
    version: str
    classes: tuple[str, ...]
    concepts: tuple[Concept, ...]
    name: str | None = None
    domain: str | None = None
    modality: str | None = None
    description: str | None = None
    reference_prompts: tuple[str, ...] = ()
    templates: tuple[str, ...] = ("{}",)
    citations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __len__(self) -> int:
        return len(self.concepts)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.concepts)

    def __getitem__(self, name: str) -> Concept:
        for c in self.concepts:
            if c.name == name:
                return c
        raise UnknownNameError(
            f"concept {name!r} is not in bank {self.id!r}; concepts: {list(self.names)}"
        )

    # ------------------------------------------------------------------ views
    @property
    def names(self) -> tuple[str, ...]:
        """Concept names, in bank order."""
        return tuple(c.name for c in self.concepts)

    @property
    def groups(self) -> tuple[str, ...]:
        """Concept groups, aligned with :attr:`names`."""
        return tuple(c.group for c in self.concepts)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical content (stable across load/save and key order)."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()

    # ------------------------------------------------------------- conversion
    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<bank>") -> ConceptBank:
        """Validate plain data (as read from YAML/JSON) and build a bank.

        Raises
        ------
        BankError
            Naming ``source``, the concept and the field of the first problem found.
        """
        where = _Where(source)
        if not isinstance(data, dict):
            raise where.error("a bank file must be a mapping with schema_version, id, ...")
        _check_keys(data, _BANK_KEYS_REQUIRED, _BANK_KEYS_OPTIONAL, where, None, "bank")
        _check_visible_text(data, where)
        if type(data["schema_version"]) is not int or data["schema_version"] != SCHEMA_VERSION:
            raise where.error(
                f"unsupported schema_version {_brief(data['schema_version'])}; this conceptlens "
                f"reads schema_version {SCHEMA_VERSION}",
                field="schema_version",
            )
        bank_id = data["id"]
        if not isinstance(bank_id, str) or not re.match(r"^[a-z0-9][a-z0-9_.+-]*$", bank_id):
            raise where.error(
                f"must be a lowercase identifier (letters, digits, '_', '-', '.'), got "
                f"{_brief(bank_id)}",
                field="id",
            )
        version = data["version"]
        if not isinstance(version, str) or not version.strip():
            raise where.error(
                f'must be a quoted string such as "1.0.0", got {_brief(version)}', field="version"
            )
        classes = _str_list(data["classes"], where, None, "classes")
        if len(set(classes)) != len(classes):
            dup = sorted({c for c in classes if classes.count(c) > 1})
            raise where.error(f"duplicate class names {dup}", field="classes")
        twins = spelling_twins(classes)
        if twins is not None:
            raise where.error(
                f"classes {twins[0]!r} and {twins[1]!r} differ only in case, spacing or "
                "Unicode form, so labels could not tell them apart; use one spelling",
                field="classes",
            )
        for opt in ("name", "domain", "modality", "description"):
            if data.get(opt) is not None and not isinstance(data[opt], str):
                raise where.error(f"must be a string, got {_brief(data[opt])}", field=opt)
        reference = _str_list(
            data.get("reference_prompts", []), where, None, "reference_prompts", allow_empty=True
        )
        templates = _str_list(data.get("templates", ["{}"]), where, None, "templates")
        for t in templates:
            if t.count("{}") != 1 or not fills_once(t):
                raise where.error(
                    f"template {_brief(t)} must contain exactly one '{{}}' where the prompt goes "
                    "and no other braces (write a literal brace as '{{' or '}}')",
                    field="templates",
                )
        citations = data.get("citations") or {}
        if not isinstance(citations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in citations.items()
        ):
            raise where.error(
                "must be a mapping key -> full reference string (authors, title, journal, year)",
                field="citations",
            )
        raw_concepts = data["concepts"]
        if not isinstance(raw_concepts, list) or not raw_concepts:
            raise where.error("must be a non-empty list of concepts", field="concepts")
        concepts = tuple(
            _parse_concept(i, raw, classes, citations, where) for i, raw in enumerate(raw_concepts)
        )
        seen: dict[str, int] = {}
        for i, c in enumerate(concepts):
            if c.name in seen:
                raise where.error(
                    f"duplicate concept name (also concept #{seen[c.name]}); names must be "
                    "unique in a bank",
                    concept=f"#{i} ({_brief(c.name)})",
                    field="name",
                )
            seen[c.name] = i
        return cls(
            id=bank_id,
            version=version,
            classes=classes,
            concepts=concepts,
            name=data.get("name"),
            domain=data.get("domain"),
            modality=data.get("modality"),
            description=data.get("description"),
            reference_prompts=reference,
            templates=templates,
            citations=dict(citations),
            extra={k: v for k, v in data.items() if _is_extension(k)},
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the bank as plain data in the canonical field order."""
        out: dict[str, Any] = {"schema_version": self.schema_version, "id": self.id}
        out["version"] = self.version
        for key in ("name", "domain", "modality", "description"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["classes"] = list(self.classes)
        if self.reference_prompts:
            out["reference_prompts"] = list(self.reference_prompts)
        out["templates"] = list(self.templates)
        if self.citations:
            out["citations"] = dict(self.citations)
        out.update(dict(self.extra))
        out["concepts"] = [c.to_dict() for c in self.concepts]
        return out

    def to_yaml(self) -> str:
        """Serialise to YAML text (the format :meth:`save` writes)."""
        return yaml.safe_dump(
            self.to_dict(), sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
        )

    def to_frame(self):  # type: ignore[no-untyped-def]
        """One row per concept: name, group, first prompt, classes, provenance kind."""
        import pandas as pd

        rows = [
            {
                "name": c.name,
                "group": c.group,
                "prompt": c.prompts[0],
                "n_prompts": len(c.prompts),
                "question": c.question,
                "positive_classes": ",".join(c.positive_classes),
                "provenance": c.provenance.get("kind"),
            }
            for c in self.concepts
        ]
        return pd.DataFrame(rows).set_index("name")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bank atomically as YAML (``.yaml``/``.yml``) or JSON (``.json``).

        Loading the written file gives back an equal bank with the same fingerprint.
        """
        path = user_path(path)
        if path.suffix.lower() == ".json":
            text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        elif path.suffix.lower() in (".yaml", ".yml"):
            text = self.to_yaml()
        else:
            raise BankError(f"{path}: unknown bank file extension; use .yaml, .yml or .json")
        return atomic_write_text(path, text)

    # ------------------------------------------------------------- operations
    def replace(self, **changes: Any) -> ConceptBank:
        """Return a copy with fields changed, validated again."""
        new = dataclasses.replace(self, **changes)
        return ConceptBank.from_dict(new.to_dict(), source=f"<bank {new.id}>")

    def subset(
        self,
        *,
        groups: Iterable[str] | None = None,
        classes: Iterable[str] | None = None,
        names: Iterable[str] | None = None,
        exclude_groups: Iterable[str] | None = None,
        include_unassociated: bool = False,
    ) -> ConceptBank:
        """Keep the concepts that match every given criterion, in bank order.

        Parameters
        ----------
        groups : iterable of str, optional
            Keep concepts whose group is one of these.
        classes : iterable of str, optional
            Keep concepts associated (+1) with at least one of these classes. A concept
            may belong to several classes. Concepts with no class association are kept
            only with ``include_unassociated=True``.
        names : iterable of str, optional
            Keep these concepts (unknown names raise ``UnknownNameError``).
        exclude_groups : iterable of str, optional
            Drop concepts of these groups (e.g. ``["artifact"]``).

        Examples
        --------
        >>> bank = load_bank("dermoscopy")  # doctest: +SKIP
        >>> bank.subset(groups=["artifact"]).names  # doctest: +SKIP
        """
        keep = list(self.concepts)
        if names is not None:
            names = list(names)
            have = set(self.names)
            missing = [n for n in names if n not in have]
            if missing:
                raise UnknownNameError(
                    f"concepts {missing} are not in bank {self.id!r}; concepts: {list(self.names)}"
                )
            wanted = set(names)
            keep = [c for c in keep if c.name in wanted]
        if groups is not None:
            g = set(groups)
            unknown = g - set(self.groups)
            if unknown:
                raise UnknownNameError(
                    f"groups {sorted(unknown)} are not in bank {self.id!r}; groups: "
                    f"{sorted(set(self.groups))}"
                )
            keep = [c for c in keep if c.group in g]
        if exclude_groups is not None:
            xg = set(exclude_groups)
            keep = [c for c in keep if c.group not in xg]
        if classes is not None:
            cl = set(classes)
            unknown = cl - set(self.classes)
            if unknown:
                raise UnknownNameError(
                    f"classes {sorted(unknown)} are not in bank {self.id!r}; classes: "
                    f"{list(self.classes)}"
                )
            keep = [
                c
                for c in keep
                if set(c.positive_classes) & cl or (include_unassociated and not c.classes)
            ]
        if not keep:
            raise BankError(f"subset of bank {self.id!r} is empty; loosen the criteria")
        return dataclasses.replace(self, concepts=tuple(keep))

    def merge(
        self,
        other: ConceptBank,
        *,
        id: str | None = None,
        version: str | None = None,
        on_conflict: str = "error",
    ) -> ConceptBank:
        """Union of two banks: classes and concepts in order, self first.

        A concept present in both with identical content is kept once. Same name with
        different content raises ``BankError`` unless ``on_conflict`` is ``"keep_first"``
        or ``"keep_second"``. Citations are merged (a key with two different references
        raises).
        """
        if on_conflict not in ("error", "keep_first", "keep_second"):
            raise BankError("on_conflict must be 'error', 'keep_first' or 'keep_second'")
        classes = list(self.classes) + [c for c in other.classes if c not in self.classes]
        citations = dict(self.citations)
        for k, v in other.citations.items():
            if k in citations and citations[k] != v:
                raise BankError(
                    f"merge {self.id!r} + {other.id!r}: citation key {k!r} means two different "
                    "references; rename it in one bank"
                )
            citations[k] = v
        mine = {c.name: i for i, c in enumerate(self.concepts)}
        concepts = list(self.concepts)
        for c in other.concepts:
            if c.name not in mine:
                concepts.append(c)
            elif concepts[mine[c.name]] != c:
                if on_conflict == "error":
                    raise BankError(
                        f"merge {self.id!r} + {other.id!r}: concept {c.name!r} differs between "
                        "the banks; pass on_conflict='keep_first' or 'keep_second', or rename it"
                    )
                if on_conflict == "keep_second":
                    concepts[mine[c.name]] = c
        reference = list(self.reference_prompts) + [
            p for p in other.reference_prompts if p not in self.reference_prompts
        ]
        templates = list(self.templates) + [t for t in other.templates if t not in self.templates]
        merged = dataclasses.replace(
            self,
            id=id or f"{self.id}+{other.id}",
            version=version or self.version,
            classes=tuple(classes),
            concepts=tuple(concepts),
            reference_prompts=tuple(reference),
            templates=tuple(templates),
            citations=citations,
        )
        return ConceptBank.from_dict(merged.to_dict(), source=f"<merge {merged.id}>")


# ---------------------------------------------------------------- file access
class _BankLoader(NoAliasLoader):
    """``yaml.SafeLoader`` that refuses aliases, duplicate keys and deep nesting.

    Aliases are refused outright (:class:`conceptlens._io.NoAliasLoader`): a few hundred
    bytes of nested aliases expand to gigabytes (a "billion laughs" bomb), and a bank has
    no need for them.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def alias_error(self, event: Any) -> Exception:
        return BankError(
            f"line {event.start_mark.line + 1}: YAML aliases (*{_brief(event.anchor)[1:-1]}) "
            "are not allowed in bank files; write the value out in full"
        )

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                event = self.peek_event()
                raise BankError(
                    f"line {event.start_mark.line + 1}: nested more than {_MAX_DEPTH} levels "
                    "deep; a bank is a mapping of lists of mappings"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: the base class reports it
                continue
            if duplicate:
                raise BankError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {_brief(key)}; each "
                    "key may appear once (a second one would silently replace the first)"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BankError(
                f"duplicate key {_brief(key)}; each key may appear once (a second one would "
                "silently replace the first)"
            )
        out[key] = value
    return out


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, without recursion (stops counting past ``limit``)."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


def _decode_text(path: Path, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BankError(f"{path}: the file is UTF-16 encoded; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        hint = "it looks binary" if b"\0" in data[:4096] else "latin-1 or another encoding?"
        raise BankError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}; "
            f"{hint}); save the bank as UTF-8"
        ) from None


def _read_file(path: Path) -> Any:
    if path.exists() and not path.is_file():
        raise BankError(
            f"{path}: not a regular file (a folder, FIFO or device); give a .yaml or .json "
            "bank file"
        )
    if not path.is_file():
        raise MissingFileError(f"bank file {path} does not exist")
    size = path.stat().st_size
    if size > _MAX_FILE_BYTES:
        raise BankError(
            f"{path}: {size:,} bytes is too large for a concept bank (limit "
            f"{_MAX_FILE_BYTES:,} bytes)"
        )
    text = _decode_text(path, path.read_bytes())
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=_json_pairs)
        else:
            loader = _BankLoader(text)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
    except BankError as exc:
        raise BankError(f"{path}: {exc}") from None
    except RecursionError:
        raise BankError(
            f"{path}: nested too deeply to read; a bank is a mapping of lists of mappings"
        ) from None
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        msg = str(exc)
        msg = msg if len(msg) <= 400 else msg[:400] + " ..."
        raise BankError(f"{path}: not valid YAML/JSON: {msg}") from None
    if _depth(data, _MAX_DEPTH) > _MAX_DEPTH:
        raise BankError(
            f"{path}: nested more than {_MAX_DEPTH} levels deep; a bank is a mapping of "
            "lists of mappings"
        )
    return data


def validate_bank_file(path: str | os.PathLike[str]) -> ConceptBank:
    """Read and validate one bank file; raise ``BankError`` naming file, concept and field.

    Examples
    --------
    >>> from conceptlens.concepts._bank import shipped_bank_dirs
    >>> validate_bank_file(shipped_bank_dirs()[0] / "chest_xray.yaml").id
    'chest_xray'
    """
    path = user_path(path)
    return ConceptBank.from_dict(_read_file(path), source=str(path))


def shipped_bank_dirs() -> list[Path]:
    """Folders holding the shipped banks (installed wheel and source checkout)."""
    import conceptlens

    dirs: list[Path] = []
    try:
        res = importlib.resources.files("conceptlens") / "_shipped_banks"
        if res.is_dir():
            dirs.append(Path(str(res)))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover
        pass
    src = Path(conceptlens.__file__).resolve().parents[1] / "concept_banks"
    if src.is_dir():
        dirs.append(src)
    return dirs


_SUFFIXES = (".yaml", ".yml", ".json")


def _shipped_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in shipped_bank_dirs():
        for p in sorted(d.iterdir()):
            if p.suffix.lower() in _SUFFIXES and p.is_file() and p.stem not in found:
                found[p.stem] = p
    return found


def list_banks() -> list[str]:
    """Names of the shipped banks (file stems), sorted.

    Examples
    --------
    >>> "dermoscopy" in list_banks()
    True
    """
    return sorted(_shipped_files())


def load_bank(name_or_path: str | os.PathLike[str] | ConceptBank) -> ConceptBank:
    """Load a shipped bank by name or any bank file by path.

    Parameters
    ----------
    name_or_path : str or path-like or ConceptBank
        A shipped bank name (see :func:`list_banks`) or a ``.yaml``/``.yml``/``.json``
        path. A ``ConceptBank`` is returned unchanged.

    Raises
    ------
    UnknownNameError
        The name is neither a shipped bank nor an existing file; lists the banks.
    BankError
        The file breaks the schema.

    Examples
    --------
    >>> bank = load_bank("dermoscopy")
    >>> "blue_white_veil" in bank.names
    True
    """
    if isinstance(name_or_path, ConceptBank):
        return name_or_path
    if not isinstance(name_or_path, str | os.PathLike):
        raise ConfigError(
            f"load_bank takes a shipped bank name {list_banks()}, the path of a .yaml/.json "
            f"bank file or a ConceptBank, got {type(name_or_path).__name__}."
        )
    text = os.fspath(name_or_path)
    path = user_path(text)
    looks_like_path = (
        path.suffix.lower() in _SUFFIXES or os.sep in text or "/" in text or path.is_dir()
    )
    if path.is_file() or (looks_like_path and path.exists()):
        return validate_bank_file(path)  # a FIFO or folder is refused there, never read
    if looks_like_path:
        raise MissingFileError(
            f"bank file {path} does not exist; shipped banks are {list_banks()}"
        )
    shipped = _shipped_files()
    if text in shipped:
        return validate_bank_file(shipped[text])
    raise UnknownNameError(
        f"unknown concept bank {text!r}; shipped banks are {sorted(shipped)} "
        "(or pass the path of a .yaml/.json bank file)"
    )
