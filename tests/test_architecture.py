"""Layering rules of the package, checked on the source with ``ast``.

``data`` imports no other layer; ``backbones`` may import ``data``; ``concepts`` may import
``backbones`` and ``data``; ``synthderm`` may import ``data``, ``backbones`` and ``concepts``;
``heads`` imports none of them; the layers above (explain, masking, spatial, studies, plot,
reports) may import every layer below them except ``synthderm``. The composers -- the CLI
(``cli.py``, ``__main__.py`` and every ``_cli*.py`` module), the demo and the top-level
``__init__`` -- may import any layer, and only they import ``synthderm``.
Shared modules at the top level (``exceptions``, ``_io``, ``_label_check``, ``_numeric``,
``_progress``, ``_samples``, ``_text``, ``_typing``, ``_version``) are importable from
everywhere. ``concepts`` uses ``backbones`` through its
public API only, and no library module imports a CLI module. See docs/architecture.md.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import conceptlens

ROOT = Path(conceptlens.__file__).resolve().parent

LOWER = ("data", "backbones", "concepts", "heads")
UPPER = ("explain", "masking", "spatial", "studies", "plot", "reports")
ALLOWED: dict[str, set[str]] = {
    "data": set(),
    "backbones": {"data"},
    "concepts": {"backbones", "data"},
    "heads": set(),
    "synthderm": {"data", "backbones", "concepts"},
    **{layer: set(LOWER) | set(UPPER) for layer in UPPER},
}
SHARED = {
    "exceptions",
    "_io",
    "_label_check",
    "_numeric",
    "_progress",
    "_samples",
    "_text",
    "_typing",
    "_version",
}
# top-level modules that compose every layer
COMPOSERS = {"__init__", "__main__", "_demo", "_demo_study", "cli"}
# Documented exception: ``conceptlens.data.__getattr__`` resolves the old SynthDerm names
# (``conceptlens.data.SynthDerm``) lazily, with a FutureWarning, through the string table
# ``_MOVED_TO_SYNTHDERM``; it is the only upward reference and is checked below.
EXEMPT_FUNCTIONS = {("data/__init__.py", "__getattr__")}


@dataclass(frozen=True)
class Import:
    path: str  # relative to the package root, e.g. "concepts/_scoring.py"
    line: int
    target: str  # absolute module name, e.g. "conceptlens.backbones._backbone"


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path, rel: str | None = None) -> list[Import]:
    rel = rel or path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    exempt_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and (rel, node.name) in EXEMPT_FUNCTIONS:
            exempt_nodes.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in exempt_nodes:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{rel}:{node.lineno}: relative import"
            base = node.module or ""
            # ``from conceptlens.synthderm import _train_lit`` imports a module
            names = [base] + [f"{base}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        found += [Import(rel, node.lineno, n) for n in names if n.startswith("conceptlens")]
    return found


def _layer(rel: str) -> str:
    """The layer of a module path relative to the package root (top-level: module name)."""
    first = rel.split("/")[0]
    return first[:-3] if first.endswith(".py") else first


def _target_layer(target: str) -> str | None:
    parts = target.split(".")
    return parts[1] if len(parts) > 1 else None


def _is_cli(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name in ("cli.py", "__main__.py") or name.startswith("_cli")


ALL_IMPORTS = [imp for path in _modules() for imp in _imports(path)]


def test_every_subpackage_is_a_known_layer() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    unknown = packages - set(ALLOWED)
    assert not unknown, f"add {sorted(unknown)} to ALLOWED in this test and docs/architecture.md"


def test_the_parser_sees_imports() -> None:
    # guards the checks below against a parser that finds nothing
    targets = {(i.path, i.target) for i in ALL_IMPORTS}
    assert ("_demo.py", "conceptlens.synthderm") in targets
    assert ("concepts/_scoring.py", "conceptlens.backbones") in {
        (p, ".".join(t.split(".")[:2])) for p, t in targets
    }


def _direction_violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        src, dst = _layer(imp.path), _target_layer(imp.target)
        if dst is None or dst == src or dst in SHARED or src in COMPOSERS or src in SHARED:
            continue
        if _is_cli(imp.path):
            continue  # a command composes layers (e.g. `fit` makes a data split)
        if dst not in ALLOWED.get(src, set()):
            where = "" if src in ALLOWED else " (a top-level module: list it in SHARED/COMPOSERS)"
            bad.append(f"{imp.path}:{imp.line} ({src}{where}) imports {imp.target} ({dst})")
    return bad


def test_layers_import_in_one_direction() -> None:
    bad = _direction_violations(ALL_IMPORTS)
    assert not bad, "imports against the layer direction:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("path", "target", "ok"),
    [
        ("data/_x.py", "conceptlens.backbones", False),
        ("backbones/_x.py", "conceptlens.data._dataset", True),
        ("backbones/_x.py", "conceptlens.concepts", False),
        ("concepts/_x.py", "conceptlens.synthderm._vocab", False),
        ("concepts/_cli_x.py", "conceptlens.synthderm", True),
        ("heads/_cli.py", "conceptlens.data", True),
        ("heads/_cv.py", "conceptlens.data", False),
        ("_helpers.py", "conceptlens.concepts", False),
        ("heads/_x.py", "conceptlens.data", False),
        ("explain/_x.py", "conceptlens.heads", True),
        ("explain/_x.py", "conceptlens.synthderm", False),
        ("synthderm/_x.py", "conceptlens.concepts", True),
        ("_demo.py", "conceptlens.synthderm", True),
        ("_io.py", "conceptlens.exceptions", True),
    ],
)
def test_direction_rule_itself(path: str, target: str, ok: bool) -> None:
    assert (not _direction_violations([Import(path, 1, target)])) is ok


def test_shared_modules_import_no_layer() -> None:
    bad = [
        f"{i.path}:{i.line} imports {i.target}"
        for i in ALL_IMPORTS
        if _layer(i.path) in SHARED and _target_layer(i.target) not in SHARED | {None}
    ]
    assert not bad, "\n".join(bad)


def test_only_cli_demo_and_top_level_import_synthderm() -> None:
    importers = {
        i.path
        for i in ALL_IMPORTS
        if _target_layer(i.target) == "synthderm" and _layer(i.path) != "synthderm"
    }
    allowed = {p for p in importers if _is_cli(p) or _layer(p) in COMPOSERS}
    assert importers == allowed, sorted(importers - allowed)


def test_the_documented_exemption_only_points_at_synthderm() -> None:
    import conceptlens.data

    table = conceptlens.data._MOVED_TO_SYNTHDERM
    assert table and all(m.startswith("conceptlens.synthderm.") for m in table.values())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from conceptlens.concepts import load_bank\n", "conceptlens.concepts"),
        ("import conceptlens.heads._io\n", "conceptlens.heads._io"),
        ("from conceptlens.synthderm import _train_lit\n", "conceptlens.synthderm._train_lit"),
        ("importlib.import_module('conceptlens.explain')\n", "conceptlens.explain"),
        ("if TYPE_CHECKING:\n    from conceptlens.data import X\n", "conceptlens.data"),
    ],
)
def test_import_parser(tmp_path: Path, source: str, expected: str) -> None:
    fake = tmp_path / "m.py"
    fake.write_text(source, encoding="utf-8")
    assert [i.target for i in _imports(fake, "data/m.py")][-1] == expected


def _private_uses(path: Path, rel: str | None = None) -> list[str]:
    """Private attributes of other objects that a module touches (``x._name``, ``__dict__``,
    ``getattr(x, "_name")``); ``self._name`` and ``cls._name`` are the module's own."""
    rel = rel or path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            private = node.attr.startswith("_") and not node.attr.endswith("__")
            if (private and not own) or node.attr == "__dict__":
                bad.append(f"{rel}:{node.lineno} .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and str(node.args[1].value).startswith("_")
        ):
            bad.append(f"{rel}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    return bad


def test_concepts_touches_no_private_backbone_attribute() -> None:
    bad = [b for p in sorted((ROOT / "concepts").glob("*.py")) for b in _private_uses(p)]
    assert not bad, "concepts must use the public Backbone API:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "source",
    [
        "def f(backbone):\n    return backbone._image_forward(1)\n",
        "def f(backbone):\n    backbone.__dict__.setdefault('_memo', {})\n",
        "def f(backbone):\n    return getattr(backbone, '_preprocessor')\n",
    ],
)
def test_private_use_check_itself(tmp_path: Path, source: str) -> None:
    fake = tmp_path / "m.py"
    fake.write_text(source, encoding="utf-8")
    assert _private_uses(fake, "concepts/m.py")
    fake.write_text("class A:\n    def f(self):\n        return self._x\n", encoding="utf-8")
    assert not _private_uses(fake, "concepts/m.py")


def test_concepts_imports_backbones_public_names_only() -> None:
    import conceptlens.backbones

    public = set(conceptlens.backbones.__all__)
    bad = []
    for path in sorted((ROOT / "concepts").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "conceptlens.backbones"
            ):
                names = {a.name for a in node.names}
                if node.module != "conceptlens.backbones" or not names <= public:
                    bad.append(f"concepts/{path.name}:{node.lineno} {node.module} {names}")
            elif isinstance(node, ast.Import):
                bad += [
                    f"concepts/{path.name}:{node.lineno} import {a.name}"
                    for a in node.names
                    if a.name.startswith("conceptlens.backbones")
                ]
    assert not bad, "\n".join(bad)


def test_library_code_imports_no_cli_module() -> None:
    bad = [
        f"{i.path}:{i.line} imports {i.target}"
        for i in ALL_IMPORTS
        if not _is_cli(i.path)
        and i.path != "__init__.py"
        and any(part == "cli" or part.startswith("_cli") for part in i.target.split(".")[1:])
    ]
    assert not bad, "\n".join(bad)
