"""Passes over ``X`` on a torch device (a CUDA GPU) for the heads' solver.

The solver's arithmetic on ``X`` is two skinny products per pass, ``X @ W.T`` (n, k) and
``R.T @ X`` (k, d), plus the Gram matrix once per fit or path.  :class:`TorchPasses`
holds ``X`` once on the device, in float64, and runs those products there; the numba
kernels (loss, gradient, curvature, coordinate descent, line search) stay on the CPU, so
each pass moves one (n, k) float64 array across the bus (``W`` or ``R`` are tiny by
comparison).  The solver reaches it only through ``_solver._mm`` and ``_solver.gram``;
with ``device`` resolved to the CPU it never constructs one and the numpy path is
unchanged.

float32 passes are not offered: the stopping rule, the line search and the duality gap
use the products, and near the optimum the gradient ``R.T @ X`` is a sum of ``n`` terms
that cancel, so float32 leaves an error of about ``2**-24 sqrt(n)`` of the gradient's
scale at zero: 6e-5 at n = 1e6, the size of the default KKT tolerance (1e-4 of it).
The device Gram matrix is float64 as well (on CPU it is float32 with a rounding shift,
see ``_solver.gram``): a GPU's float32 products may run in TF32
(``torch.set_float32_matmul_precision``), whose 2**-11 rounding the shift does not
cover, and the one product per fit is cheap in float64 on a data-centre GPU.

``torch`` is imported only when a device is actually used (``device="cuda"``, or
``"auto"`` on a problem of at least :data:`AUTO_MIN_SIZE` entries): importing it costs
1.5-1.8 s here, three times the first-fit compile budget of a small fit.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from conceptlens.exceptions import ConfigError, MissingDependencyError
from conceptlens.heads._params import DEVICE, check_param

__all__ = ["AUTO_MIN_SIZE", "TorchPasses", "passes_for", "resolve"]

#: ``device="auto"`` uses CUDA for problems with at least this many entries ``n * d``
AUTO_MIN_SIZE = 50_000_000
#: ... when the device has this multiple of ``X``'s size free (``X`` and a working set)
_AUTO_FREE_FACTOR = 2.5


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of conceptlens
        raise MissingDependencyError(
            "device='cuda' needs torch; install it (pip install torch) or pass device='cpu'."
        ) from None
    return torch


def resolve(device: str, n: int, d: int) -> str | None:
    """The torch device the passes over an ``(n, d)`` matrix run on, or ``None`` (numpy).

    ``"cpu"``: numpy.  ``"auto"``: CUDA when ``n * d >= AUTO_MIN_SIZE``, torch is
    installed, ``torch.cuda.is_available()`` and the default GPU has room for ``X``
    and a working set (``torch`` is not imported below the size).  ``"cuda"`` or
    ``"cuda:N"``: that GPU, or a :class:`~conceptlens.exceptions.ConfigError` when
    there is none.

    Examples
    --------
    >>> from conceptlens.heads._device import resolve
    >>> resolve("auto", 1_000, 50) is None  # small: numpy, torch not imported
    True
    """
    check_param("device", "device", device, DEVICE)
    if device == "cpu":
        return None
    if device == "auto":
        if n * d < AUTO_MIN_SIZE or importlib.util.find_spec("torch") is None:
            return None
        torch = _torch()
        if not torch.cuda.is_available():
            return None
        free, _total = torch.cuda.mem_get_info()
        return "cuda" if _AUTO_FREE_FACTOR * 8.0 * n * d <= free else None
    torch = _torch()
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device={device!r} was requested but torch sees no CUDA GPU "
            "(torch.cuda.is_available() is False: no GPU, no driver, or a CPU-only torch "
            "build); pass device='auto' (CUDA when present and the problem is large) or "
            "device='cpu'."
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(
            f"device={device!r} was requested but torch sees {count} CUDA GPU(s) "
            f"(cuda:0 to cuda:{count - 1}); pass one of those, 'auto' or 'cpu'."
        )
    return device


def passes_for(X: np.ndarray, device: Any) -> TorchPasses | None:
    """The backend for the passes over ``X``: ``device`` itself when it is a
    :class:`TorchPasses` built on ``X``, ``None`` (numpy) for ``device=None``, else
    :func:`resolve`'s choice for the device name."""
    if device is None:
        return None
    if isinstance(device, TorchPasses):
        if device.X is not X:
            raise ValueError("a TorchPasses backend serves only the matrix it was built on")
        return device
    name = resolve(device, *X.shape)
    return None if name is None else TorchPasses(X, name)


class TorchPasses:
    """``X`` held once on a torch device, and the products of the solver's passes.

    Parameters
    ----------
    X : ndarray (n, d) float64, C-contiguous
        The solver's matrix; products are dispatched here when one operand *is* this
        array (``_solver._mm``).
    device : str
        A torch device (``"cuda"``, ``"cuda:1"``; ``"cpu"`` runs torch's CPU BLAS, which
        the tests use to check this class against numpy without a GPU).

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads._device import TorchPasses
    >>> X = np.arange(6.0).reshape(3, 2)
    >>> dev = TorchPasses(X, "cpu")
    >>> dev.matmul(X, np.ones((2, 1))).ravel().tolist()
    [1.0, 5.0, 9.0]
    """

    def __init__(self, X: np.ndarray, device: str) -> None:
        torch = _torch()
        self._torch = torch
        self.device = torch.device(device)
        self.X = X
        try:
            self._t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64)).to(self.device)
        except torch.cuda.OutOfMemoryError:
            raise ConfigError(
                f"the scores ({X.shape[0]} x {X.shape[1]} float64, "
                f"{X.nbytes / 2**30:.1f} GiB) do not fit on {device}; pass device='cpu'."
            ) from None
        self._cols: np.ndarray | None = None
        self._sub: Any = None

    @classmethod
    def _view(cls, parent: TorchPasses, X: np.ndarray, t: Any) -> TorchPasses:
        out = cls.__new__(cls)
        out._torch, out.device, out.X, out._t = parent._torch, parent.device, X, t
        out._cols, out._sub = None, None
        return out

    def columns(self, XJ: np.ndarray, cols: np.ndarray) -> TorchPasses:
        """The backend for a working set ``XJ = X[:, cols]``.

        The column subset is gathered on the device (no transfer) and kept until another
        working set is asked for, so the iterations on one working set, and a working set
        that comes back unchanged, reuse it.
        """
        if XJ is self.X:
            return self
        if self._cols is None or not np.array_equal(self._cols, cols):
            index = self._torch.as_tensor(np.asarray(cols, dtype=np.int64), device=self.device)
            self._sub = None  # free the previous subset before gathering the next
            self._sub = self._t.index_select(1, index)
            self._cols = np.array(cols, dtype=np.int64)
        return TorchPasses._view(self, XJ, self._sub)

    def _to(self, a: np.ndarray) -> Any:
        return self._torch.from_numpy(np.asarray(a, dtype=np.float64)).to(self.device)

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a @ b`` with ``a`` or ``b`` this backend's ``X``: ``X @ B`` or ``A @ X``."""
        if a is self.X:
            out = self._t @ self._to(b)
        elif b is self.X:
            out = self._to(a) @ self._t
        else:
            raise ValueError("TorchPasses.matmul: neither operand is the matrix it holds")
        return out.cpu().numpy()

    def gram_block(self, step: int, weights: np.ndarray | None) -> np.ndarray:
        """``Xr.T @ Xr`` in float64 for the rows ``Xr = X[::step]``, each scaled by
        ``sqrt(weights)`` (``None``: unscaled): the ``X`` block of ``_solver.gram``."""
        Xr = self._t[::step]
        if weights is not None:
            Xr = Xr * self._to(np.sqrt(weights))[:, None]
        return (Xr.T @ Xr).cpu().numpy()
