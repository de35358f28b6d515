"""The notebooks in studies/: stored stripped and valid (fast), and they run top to bottom (slow).

The slow test executes every ``studies/*.ipynb`` with nbclient in a Jupyter kernel started
from the interpreter running pytest (so the kernel imports the conceptlens under test), in a
temporary working directory with an empty embedding cache shared by the notebooks of one
run. ``python -m tests.test_notebooks [NAME ...]`` runs the same execution and prints the
time of each notebook.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "studies"
NOTEBOOKS = sorted(STUDIES.glob("*.ipynb"))
# per cell; the longest cell (scoring 1,200 images from an empty cache) takes well under it
CELL_TIMEOUT = 600
KERNEL_NAME = "conceptlens-notebook-test"


def _strip_module():
    spec = importlib.util.spec_from_file_location("strip_notebooks", STUDIES / "strip_outputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_studies_are_there():
    names = {p.name for p in NOTEBOOKS}
    assert {
        "quickstart.ipynb",
        "shortcut_audit.ipynb",
        "test_time_masking.ipynb",
        "spatial_prototypes.ipynb",
        "bring_your_own_data.ipynb",
    } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_valid(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4
    nbformat.validate(nb)  # raises ValidationError naming the bad field
    problems = _strip_module().unstripped(nb)
    assert not problems, (
        f"{path.name} is stored with outputs ({'; '.join(problems)}); strip it with "
        f"`python studies/strip_outputs.py studies/{path.name}`"
    )
    assert any(c.cell_type == "code" for c in nb.cells)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def _code(path: Path) -> list[tuple[int, str]]:
    """The code cells of a notebook, IPython magics (``%...``, ``!...``) blanked."""
    nb = json.loads(path.read_text())
    cells = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            lines = "".join(cell["source"]).splitlines()
            cells.append((i, "\n".join("" if ln.lstrip()[:1] in "%!" else ln for ln in lines)))
    return cells


def _private_uses(path: Path) -> list[str]:
    """Imports and attributes of conceptlens outside its public API, in one notebook."""
    import ast
    import importlib

    found = []
    aliases: dict[str, str] = {}  # local name -> conceptlens module it stands for
    for i, source in _code(path):
        for node in ast.walk(ast.parse(source, f"{path.name} cell {i}")):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "conceptlens":
                        aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "conceptlens"
            ):
                module = importlib.import_module(node.module or "")
                private = any(p.startswith("_") for p in (node.module or "").split("."))
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    if _is_module(sub):
                        aliases[a.asname or a.name] = sub
                    elif private or a.name not in getattr(module, "__all__", ()):
                        found.append(f"cell {i}: from {node.module} import {a.name}")
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                module = importlib.import_module(aliases[node.value.id])
                if node.attr not in getattr(module, "__all__", ()):
                    found.append(f"cell {i}: {aliases[node.value.id]}.{node.attr}")
    names = [m for m in aliases.values() if any(p.startswith("_") for p in m.split("."))]
    return found + [f"import of private module {m}" for m in names]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_only_the_public_api(path):
    problems = _private_uses(path)
    assert not problems, f"{path.name} reaches past the public API: {problems}"


def test_private_uses_are_found(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "%matplotlib inline\nimport conceptlens as cl\nfrom conceptlens import plot\n"
            "from conceptlens._io import cache_root\nfrom conceptlens.heads import fit_path\n"
            "from conceptlens.heads import _kernels\ncl.load_bank('synthderm')\n"
            "cl._demo\nplot.metric_table\nplot._common"
        )
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    found = _private_uses(path)
    assert found == [
        "cell 0: from conceptlens._io import cache_root",
        "cell 0: conceptlens._demo",
        "cell 0: conceptlens.plot._common",
        "import of private module conceptlens.heads._kernels",
    ], found


def test_unstripped_finds_outputs_counts_and_execution_metadata():
    nbformat = pytest.importorskip("nbformat")
    strip = _strip_module()
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("1 + 1")
    code.execution_count = 3
    code.outputs = [
        nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=3)
    ]
    code.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00"}
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), code]
    found = strip.unstripped(nb)
    assert len(found) == 3 and all("cell 1" in p for p in found)
    strip.strip(nb)
    assert strip.unstripped(nb) == []
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None
    assert nb.cells[1].source == "1 + 1"  # the code itself is kept
    nbformat.validate(nb)


def _kernel_dir(tmp: Path) -> Path:
    """A kernelspec that starts ipykernel with this interpreter and this checkout first on the
    path, under a name no installed kernel uses."""
    spec = tmp / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "conceptlens tests",
        "language": "python",
        "env": {"PYTHONPATH": path},
    }
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return tmp


def execute(path: Path, workdir: Path, kernels: Path) -> tuple[Any, float]:
    """Run one notebook top to bottom in ``workdir``; return it executed and the seconds."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(workdir)}},
        extra_arguments=[],
    )
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(kernels), old) if p)
    try:
        t0 = time.perf_counter()
        client.execute()
        return nb, time.perf_counter() - t0
    finally:
        if old is None:
            del os.environ["JUPYTER_PATH"]
        else:
            os.environ["JUPYTER_PATH"] = old


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """One kernelspec and one embedding cache for the notebooks of a run."""
    tmp = tmp_path_factory.mktemp("notebooks")
    return _kernel_dir(tmp / "jupyter"), tmp / "cache"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, notebook_env, tmp_path, monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    kernels, cache = notebook_env
    monkeypatch.setenv("CONCEPTLENS_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # a failing cell raises CellExecutionError with its traceback
    nb, _ = execute(path, tmp_path, kernels)
    warned = warnings_in(nb)
    assert not warned, f"{path.name} warns:\n" + "\n".join(warned)


# tqdm's advice to install ipywidgets, printed once per kernel when transformers imports
# tqdm.auto (ipywidgets is not a dependency; conceptlens' own bars do not trigger it)
TOLERATED = ("TqdmWarning: IProgress not found",)


def warnings_in(nb: Any) -> list[str]:
    """Warning lines the executed notebook printed (a notebook should run without any)."""
    lines = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                lines += [
                    f"cell {i}: {ln}"
                    for ln in out["text"].splitlines()
                    if "Warning" in ln and not any(t in ln for t in TOLERATED)
                ]
    return lines


def main(argv: list[str]) -> None:
    """Execute the named notebooks (default: all) and print the seconds each took."""
    import tempfile

    names = argv or [p.name for p in NOTEBOOKS]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        kernels = _kernel_dir(tmp / "jupyter")
        os.environ.setdefault("CONCEPTLENS_CACHE_DIR", str(tmp / "cache"))
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        for name in names:
            work = tmp / Path(name).stem
            work.mkdir()
            nb, seconds = execute(STUDIES / Path(name).name, work, kernels)
            print(f"{name}: {seconds:.1f} s", flush=True)
            for line in warnings_in(nb):
                print("  ", line)
            if os.environ.get("NOTEBOOK_OUT"):
                import nbformat

                nbformat.write(nb, Path(os.environ["NOTEBOOK_OUT"]) / Path(name).name)


if __name__ == "__main__":
    main(sys.argv[1:])
