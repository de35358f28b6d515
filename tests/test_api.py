import subprocess
import sys
from pathlib import Path

import pytest

import conceptlens


@pytest.mark.parametrize("name", [n for n in conceptlens.__all__ if n != "__version__"])
def test_every_public_name_resolves(name):
    import importlib

    obj = getattr(conceptlens, name)
    home = conceptlens._LAZY.get(name, "conceptlens.exceptions")
    module = importlib.import_module(home)
    # the top-level name is the very object its subpackage exports, not a stand-in
    assert getattr(module, name) is obj
    assert name in getattr(module, "__all__", [name])
    assert getattr(obj, "__module__", "").startswith("conceptlens"), name


def test_lazy_table_and_all_list_the_same_names():
    lazy = set(conceptlens._LAZY)
    eager = {n for n in conceptlens.__all__ if n in vars(conceptlens)}
    assert lazy <= set(conceptlens.__all__)
    assert set(conceptlens.__all__) == lazy | eager
    assert len(conceptlens.__all__) == len(set(conceptlens.__all__))


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        conceptlens.no_such_thing  # noqa: B018


def test_import_is_light():
    code = "import sys, conceptlens; print('torch' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ----------------------------------------------------------------- one list, one stub
STUB = Path(conceptlens.__file__).with_suffix(".pyi")


def stub_text() -> str:
    """``conceptlens/__init__.pyi`` as generated from ``conceptlens._API``."""
    lines = [
        "# Generated from conceptlens._API and conceptlens._EXCEPTIONS by tests/test_api.py;",
        "# do not edit: change the table in conceptlens/__init__.py, then run",
        "#     python -m tests.test_api",
        "# ruff: noqa: I001  (grouped as in the table, not sorted)",
        "from conceptlens._version import __version__ as __version__",
    ]

    def block(module: str, names: tuple[str, ...]) -> list[str]:
        return [f"from {module} import (", *(f"    {n} as {n}," for n in names), ")"]

    lines += block("conceptlens.exceptions", conceptlens._EXCEPTIONS)
    for module, names in conceptlens._API.items():
        lines += block(module, names)
    lines += ["", "__all__ = ["] + [f'    "{n}",' for n in conceptlens.__all__] + ["]"]
    return "\n".join(lines) + "\n"


def test_stub_is_generated_from_the_api_table():
    assert STUB.is_file() and STUB.read_text(encoding="utf-8") == stub_text(), (
        "conceptlens/__init__.pyi is out of date; run `python -m tests.test_api`"
    )


def test_all_is_built_from_the_table_and_has_no_duplicates():
    names = [n for names in conceptlens._API.values() for n in names]
    assert len(names) == len(set(names))
    assert list(conceptlens.__all__) == ["__version__", *names, *conceptlens._EXCEPTIONS]
    assert set(dir(conceptlens)) >= set(conceptlens.__all__)


@pytest.mark.parametrize("module", ["data", "synthderm", "backbones", "concepts", "heads"])
def test_subpackage_all_lists_resolve(module):
    import importlib

    mod = importlib.import_module(f"conceptlens.{module}")
    assert mod.__all__ and len(mod.__all__) == len(set(mod.__all__))
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_top_level_names_come_from_their_subpackage():
    import importlib

    for module, names in conceptlens._API.items():
        mod = importlib.import_module(module)
        for name in names:
            assert getattr(conceptlens, name) is getattr(mod, name)
            if module != "conceptlens._demo":
                assert name in mod.__all__, f"{name} is re-exported but not public in {module}"


@pytest.mark.parametrize(
    ("module", "internal"),
    [
        ("conceptlens.concepts", "lexical_embed"),
        ("conceptlens.concepts", "facility_location_value"),
        ("conceptlens.concepts", "sanitize_concept"),
        ("conceptlens.synthderm", "CONCEPT_PHRASES"),
        ("conceptlens.synthderm", "synthderm_bayes_accuracy"),
        ("conceptlens.data", "SynthDerm"),
    ],
)
def test_internals_are_not_in_all(module, internal):
    import importlib

    assert internal not in importlib.import_module(module).__all__


if __name__ == "__main__":
    STUB.write_text(stub_text(), encoding="utf-8")
    print(f"wrote {STUB}")
