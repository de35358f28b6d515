"""Heavy dependencies are imported in one module each, and lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import conceptlens

ROOT = Path(conceptlens.__file__).parent


def _importers(package: str) -> set[str]:
    found = set()
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n == package or n.startswith(package + ".") for n in names):
                found.add(path.relative_to(ROOT).as_posix())
    return found


@pytest.mark.parametrize(
    "package,module", [("shap", "explain/_shap.py"), ("captum", "explain/_captum.py")]
)
def test_one_module_imports_each_heavy_dependency(package, module):
    assert _importers(package) == {module}


def test_explain_and_masking_import_without_torch_shap_captum():
    code = (
        "import sys, conceptlens.explain, conceptlens.masking; "
        "print(*(m in sys.modules for m in ('torch', 'shap', 'captum')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
