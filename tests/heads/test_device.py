"""The solver's passes over X on a torch device (``heads._device``), checked on CPU.

The torch backend is forced on torch's CPU device so that every test runs without a
GPU; its products, Gram matrix, fits and paths are compared with the numpy backend.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conceptlens.exceptions import ConfigError
from conceptlens.heads import (
    ConceptBottleneckClassifier,
    SparseLinearHead,
    SparseLinearHeadCV,
    _device,
    _path,
    _solver,
    fit_path,
    load_head,
    save_head,
)
from tests.heads.conftest import make_problem

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _problem(seed=0, n=500, d=15, k=3):
    X, y = make_problem(seed, n=n, d=d, k=k)
    return np.ascontiguousarray(X), y


@pytest.fixture
def torch_cpu(monkeypatch):
    """Route every ``device="auto"`` fit through the torch backend on torch's CPU, and
    count the products it runs (a test that never reached it would pass vacuously)."""
    calls = {"matmul": 0, "gram_block": 0}
    matmul, gram_block = _device.TorchPasses.matmul, _device.TorchPasses.gram_block

    def counted_matmul(self, a, b):
        calls["matmul"] += 1
        return matmul(self, a, b)

    def counted_gram(self, step, weights):
        calls["gram_block"] += 1
        return gram_block(self, step, weights)

    # "auto" -> the torch backend on torch's CPU; "cpu" -> numpy, as always
    monkeypatch.setattr(
        _device, "resolve", lambda device, n, d: "cpu" if device == "auto" else None
    )
    monkeypatch.setattr(_device.TorchPasses, "matmul", counted_matmul)
    monkeypatch.setattr(_device.TorchPasses, "gram_block", counted_gram)
    return calls


# ---------------------------------------------------------------------------- products
def test_products_match_numpy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 40))
    dev = _device.TorchPasses(X, "cpu")
    B, R = rng.normal(size=(40, 5)), rng.normal(size=(300, 5))
    xw = _solver._mm(X, B, dev)
    rx = _solver._mm(np.ascontiguousarray(R.T), X, dev)
    assert isinstance(xw, np.ndarray) and xw.dtype == np.float64 and xw.shape == (300, 5)
    np.testing.assert_allclose(xw, X @ B, rtol=0, atol=1e-10)
    np.testing.assert_allclose(rx, R.T @ X, rtol=0, atol=1e-10)
    # a working set: the column subset is gathered on the device, kept while the same
    # columns come back, and replaced for another set
    cols = np.array([1, 5, 7, 30])
    XJ = np.ascontiguousarray(X[:, cols])
    devJ = dev.columns(XJ, cols)
    np.testing.assert_allclose(_solver._mm(XJ, B[cols], devJ), XJ @ B[cols], atol=1e-10)
    np.testing.assert_allclose(_solver._mm(R.T, XJ, devJ), R.T @ XJ, atol=1e-10)
    again = dev.columns(np.ascontiguousarray(X[:, cols]), cols.copy())
    assert again._t is devJ._t  # same working set: no new gather
    other = dev.columns(np.ascontiguousarray(X[:, :3]), np.arange(3))
    assert other._t is not devJ._t
    np.testing.assert_allclose(other._t.numpy(), X[:, :3], rtol=0, atol=0)
    assert dev.columns(X, np.arange(40)) is dev


def test_matmul_refuses_a_matrix_it_does_not_hold():
    X = np.ones((4, 3))
    dev = _device.TorchPasses(X, "cpu")
    with pytest.raises(ValueError, match="neither operand"):
        dev.matmul(X.copy(), np.ones((3, 1)))
    with pytest.raises(ValueError, match="only the matrix it was built on"):
        _device.passes_for(X.copy(), dev)
    with pytest.raises(ValueError, match="dev must hold"):
        _solver.solve(X.copy(), np.eye(2)[[0, 1, 0, 1]], np.full(4, 0.25), "multinomial",
                      lam1=0.1, lam2=0.1, dev=dev)  # fmt: skip


@pytest.mark.parametrize("weights", ["equal", "unequal"])
@pytest.mark.parametrize("subsample", [False, True])
def test_gram_matches_numpy_float64(weights, subsample):
    rng = np.random.default_rng(1)
    n, d = 2000, 10  # 200 rows per feature: subsampled every 25th row
    X = rng.normal(size=(n, d)) + rng.normal(size=d)
    s = np.full(n, 1.0 / n) if weights == "equal" else rng.random(n)
    s /= s.sum()
    G_dev = _solver.gram(X, s, subsample=subsample, dev=_device.TorchPasses(X, "cpu"))
    G_np = _solver.gram(X, s, precision="float64", subsample=subsample)
    np.testing.assert_allclose(G_dev, G_np, rtol=0, atol=1e-10)
    if not subsample:  # the dense formula of the weighted Gram matrix of [X, 1]
        Xa = np.c_[X, np.ones(n)]
        np.testing.assert_allclose(G_dev, (Xa * s[:, None]).T @ Xa, rtol=0, atol=1e-10)


def test_gram_when_the_subsample_has_no_weight():
    # every kept row has weight zero: the Gram matrix falls back to every row
    rng = np.random.default_rng(2)
    n, d = 2000, 10
    X = rng.normal(size=(n, d))
    s = rng.random(n)
    s[:: _solver.gram_row_step(n, d)] = 0.0
    s /= s.sum()
    G_dev = _solver.gram(X, s, subsample=True, dev=_device.TorchPasses(X, "cpu"))
    Xa = np.c_[X, np.ones(n)]
    np.testing.assert_allclose(G_dev, (Xa * s[:, None]).T @ Xa, rtol=0, atol=1e-10)


# -------------------------------------------------------------------------- fit and path
# Fits at KKT tolerance 1e-10 agree to the tolerance's order, not bit for bit: the two
# backends' products differ in the last bits, which can change the iterates' route (an
# Anderson extrapolation accepted on one and rejected on the other) to the same optimum.
_FIT_ATOL = 1e-8


def test_fit_matches_numpy_backend(torch_cpu):
    X, y = _problem()
    ref = SparseLinearHead(C=0.5, l1_ratio=0.7, tol=1e-10, device="cpu").fit(X, y)
    assert torch_cpu["matmul"] == 0
    got = SparseLinearHead(C=0.5, l1_ratio=0.7, tol=1e-10).fit(X, y)  # "auto" -> torch
    assert torch_cpu["matmul"] > 0 and torch_cpu["gram_block"] > 0
    np.testing.assert_allclose(got.coef_, ref.coef_, rtol=0, atol=_FIT_ATOL)
    np.testing.assert_allclose(got.intercept_, ref.intercept_, rtol=0, atol=_FIT_ATOL)
    assert got.duality_gap_ < 1e-9 and ref.duality_gap_ < 1e-9
    assert 0 < np.count_nonzero(got.coef_) < got.coef_.size  # a sparse, non-trivial fit


def test_default_tolerance_fit_certified_on_both_backends(torch_cpu):
    # at the default tolerance the two backends' round-off may end the solve an
    # iteration apart; both solutions are certified close to the same optimum
    X, y = _problem(seed=3, k=4)
    ref = SparseLinearHead(C=0.2, device="cpu").fit(X, y)
    got = SparseLinearHead(C=0.2).fit(X, y)
    assert torch_cpu["matmul"] > 0
    assert max(got.duality_gap_, ref.duality_gap_) < 1e-4
    np.testing.assert_allclose(got.coef_, ref.coef_, rtol=0, atol=1e-2)


def test_path_matches_numpy_backend(torch_cpu):
    X, y = _problem(seed=2, n=400, d=12, k=3)
    ref = fit_path(X, y, Cs=5, l1_ratio=0.5, tol=1e-10, device="cpu")
    calls = torch_cpu["matmul"]
    got = fit_path(X, y, Cs=5, l1_ratio=0.5, tol=1e-10)
    assert torch_cpu["matmul"] > calls
    np.testing.assert_allclose(got.Cs, ref.Cs, rtol=1e-12)
    np.testing.assert_allclose(got.coef, ref.coef, rtol=0, atol=_FIT_ATOL)
    np.testing.assert_allclose(got.intercept, ref.intercept, rtol=0, atol=_FIT_ATOL)
    assert got.n_nonzero[0].sum() == 0 and got.n_nonzero[-1].sum() > 0


def test_cv_and_cbm_use_the_device(torch_cpu):
    X, y = _problem(seed=4)
    ref = SparseLinearHeadCV(Cs=4, tol=1e-10, device="cpu").fit(X, y)
    got = SparseLinearHeadCV(Cs=4, tol=1e-10).fit(X, y)
    assert torch_cpu["matmul"] > 0
    np.testing.assert_allclose(got.C_, ref.C_, rtol=1e-12)  # C_min from a pass: round-off
    np.testing.assert_allclose(got.coef_, ref.coef_, rtol=0, atol=_FIT_ATOL)
    before = torch_cpu["matmul"]
    cbm = ConceptBottleneckClassifier(C=0.3, tol=1e-10).fit(X, y)
    assert torch_cpu["matmul"] > before
    ref_cbm = ConceptBottleneckClassifier(C=0.3, tol=1e-10, device="cpu").fit(X, y)
    np.testing.assert_allclose(cbm.coef_.values, ref_cbm.coef_.values, rtol=0, atol=_FIT_ATOL)


def test_solve_path_shares_one_backend_with_grid():
    X, y = _problem(seed=5)
    Y = np.eye(3)[y]
    sw = np.ones(len(y))
    dev = _device.TorchPasses(X, "cpu")
    Cs = _path.grid(X, Y, sw, "multinomial", 4, 1e-2, 0.5, dev)
    np.testing.assert_allclose(Cs, _path.grid(X, Y, sw, "multinomial", 4, 1e-2, 0.5), rtol=1e-12)
    p = _path.solve_path(X, Y, sw, "multinomial", Cs, l1_ratio=0.5, tol=1e-10, device=dev)
    q = _path.solve_path(X, Y, sw, "multinomial", Cs, l1_ratio=0.5, tol=1e-10, device=None)
    np.testing.assert_allclose(p.coef, q.coef, rtol=0, atol=_FIT_ATOL)


# ------------------------------------------------------------------------------- "auto"
_NO_TORCH = """
import sys
import numpy as np
from conceptlens.heads import (
    ConceptBottleneckClassifier, SparseLinearHead, SparseLinearHeadCV, fit_path,
)
rng = np.random.default_rng(0)
X = rng.normal(size=(300, 8)); y = np.argmax(X[:, :3], axis=1)
SparseLinearHead(C=0.5).fit(X, y)
fit_path(X, y, Cs=3)
SparseLinearHeadCV(Cs=3).fit(X, y)
ConceptBottleneckClassifier(C=0.5).fit(X, y)
print("torch" in sys.modules)
"""


def test_auto_never_imports_torch_below_the_threshold():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False"


def test_auto_picks_cuda_only_when_large_and_present(monkeypatch):
    n, d = 10_000, 5_000  # 5e7 entries: at the threshold
    assert n * d == _device.AUTO_MIN_SIZE
    assert _device.resolve("auto", n, d - 1) is None  # below: torch not consulted
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _device.resolve("auto", n, d) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (10 * 8 * n * d, 0))
    assert _device.resolve("auto", n, d) == "cuda"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (2 * 8 * n * d, 0))
    assert _device.resolve("auto", n, d) is None  # no room for X and a working set
    assert _device.resolve("cpu", n, d) is None
    monkeypatch.setattr(_device.importlib.util, "find_spec", lambda name: None)
    assert _device.resolve("auto", n, d) is None  # torch not installed: numpy


# -------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "CUDA", "mps", 0, None])
@pytest.mark.parametrize(
    "kind", [SparseLinearHead, SparseLinearHeadCV, ConceptBottleneckClassifier]
)
def test_device_validated(kind, bad):
    X, y = _problem()
    with pytest.raises(ConfigError, match=r"parameter 'device' must be one of 'auto', 'cpu'"):
        kind(device=bad).fit(X, y)


def test_fit_path_device_validated():
    X, y = _problem()
    with pytest.raises(ConfigError, match=r"parameter 'device' must be one of"):
        fit_path(X, y, Cs=3, device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_gpu_is_a_clear_error(device):
    X, y = _problem()
    with pytest.raises(ConfigError, match=r"torch sees no CUDA GPU.*device='auto'"):
        SparseLinearHead(device=device).fit(X, y)


def test_cuda_index_beyond_the_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"'cuda:2'.*sees 2 CUDA GPU\(s\) \(cuda:0 to cuda:1\)"):
        _device.resolve("cuda:2", 10, 10)
    assert _device.resolve("cuda:1", 10, 10) == "cuda:1"


# ---------------------------------------------------------------------------- save/load
@pytest.mark.parametrize(
    "kind", [SparseLinearHead, SparseLinearHeadCV, ConceptBottleneckClassifier]
)
def test_device_round_trips_through_save_and_load(tmp_path, kind):
    X, y = _problem()
    extra = {"Cs": 3} if kind is not SparseLinearHead else {}
    head = kind(device="cuda:1", **extra)
    head.set_params(device="cpu").fit(X, y)
    head.set_params(device="cuda:1")  # a parameter to store, not used until a refit
    save_head(head, tmp_path / "h")
    loaded = load_head(tmp_path / "h")
    assert loaded.get_params()["device"] == "cuda:1"
    assert loaded.get_params() == head.get_params()
    np.testing.assert_array_equal(loaded.predict(X), head.predict(X))


# ------------------------------------------------------------------------------- a GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fit_matches_cpu():
    X, y = _problem(seed=6, n=2000, d=40, k=4)
    ref = SparseLinearHead(C=0.3, tol=1e-10, device="cpu").fit(X, y)
    got = SparseLinearHead(C=0.3, tol=1e-10, device="cuda").fit(X, y)
    np.testing.assert_allclose(got.coef_, ref.coef_, rtol=0, atol=1e-9)
    path = fit_path(X, y, Cs=4, tol=1e-10, device="cuda")
    np.testing.assert_allclose(path.coef, fit_path(X, y, Cs=4, tol=1e-10, device="cpu").coef,
                               rtol=0, atol=1e-9)  # fmt: skip
