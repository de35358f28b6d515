import subprocess
import sys

import pytest

import conceptlens


@pytest.mark.parametrize("name", [n for n in conceptlens.__all__ if n != "__version__"])
def test_every_public_name_resolves(name):
    assert getattr(conceptlens, name) is not None


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        conceptlens.no_such_thing  # noqa: B018


def test_import_is_light():
    code = "import sys, conceptlens; print('torch' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
