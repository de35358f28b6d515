import subprocess
import sys

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
