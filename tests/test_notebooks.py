"""The notebooks in studies/: stored without outputs, and they run top to bottom."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_stripped(path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    """With nbclient and a Jupyter kernel when installed, else every code cell in order."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONCEPTLENS_CACHE_DIR", str(tmp_path / "cache"))
    try:
        import nbformat
        from nbclient import NotebookClient

        NotebookClient(nbformat.read(path, as_version=4), timeout=600,
                       kernel_name="python3").execute()  # fmt: skip
        return
    except ImportError:
        pass
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {}
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}[{i}]", "exec"), namespace)
