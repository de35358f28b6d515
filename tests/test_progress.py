"""Long steps show progress on stderr (once they pass the delay); --quiet silences them."""

import numpy as np
import pytest

from conceptlens import _progress


@pytest.fixture
def loud(monkeypatch):
    monkeypatch.setattr(_progress, "_QUIET", False)
    monkeypatch.setattr(_progress, "DELAY", 0.0)  # every loop counts as long here


def test_image_and_text_encoding_and_model_load_report_progress(loud, tmp_path, capsys):
    from conceptlens.backbones import load_backbone
    from tests.backbones._tiny import VIT_AVG, images, write_checkpoint

    ckpt = write_checkpoint(VIT_AVG, tmp_path / "tiny.safetensors")
    with _progress.step("loading backbone tiny"):
        bb = load_backbone(ckpt)
    bb.encode_text(["hair", "ruler"])
    bb.encode_images(images(3, size=(36, 36)))
    err = capsys.readouterr().err
    assert "loading backbone tiny ..." in err and "loading backbone tiny: done in" in err
    assert "encoding text" in err and "encoding images" in err


def test_fitting_along_the_path_reports_progress(loud, capsys):
    from conceptlens.heads._path import solve_path

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    Y = np.eye(2)[(X[:, 0] > 0).astype(int)]
    solve_path(X, Y, np.ones(40), "multinomial", np.logspace(-2, 1, 4), l1_ratio=0.5)
    assert "regularisation path" in capsys.readouterr().err


def test_quiet_silences_every_kind(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "_QUIET", True)
    monkeypatch.setattr(_progress, "DELAY", 0.0)
    assert list(_progress.progress(range(3), desc="loop")) == [0, 1, 2]
    with _progress.step("a step"):
        pass
    assert capsys.readouterr().err == ""


_IN_KERNEL_WITHOUT_IPYWIDGETS = """
import sys, types, warnings
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")  # a Jupyter kernel
ipython = types.ModuleType("IPython")
ipython.get_ipython = lambda: types.SimpleNamespace(config={"IPKernelApp": {}})
sys.modules["IPython"] = ipython
sys.modules["ipywidgets"] = None  # not installed
from conceptlens._progress import progress, set_quiet
set_quiet(False)
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    assert list(progress(range(3), delay=0)) == [0, 1, 2]
print("WARNINGS:", [str(w.message) for w in seen])
"""


def test_a_notebook_without_ipywidgets_gets_a_text_bar_and_no_warning():
    """tqdm.auto in a kernel without ipywidgets warns "IProgress not found" on every first
    bar; ipywidgets is not a dependency, so the text bar is used instead, silently."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _IN_KERNEL_WITHOUT_IPYWIDGETS],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "CONCEPTLENS_QUIET": "0"},
        check=True,
    )
    assert "WARNINGS: []" in out.stdout, out.stdout + out.stderr
    assert "3/3" in out.stderr or "0/3" in out.stderr  # the text bar was drawn on stderr
