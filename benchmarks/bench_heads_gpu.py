"""Benchmark the heads' solver with its passes over X on a CUDA GPU (issue 13).

With CUDA: one fit at n=1,000,000 d=4,000 k=100 (the Label-free CBM setting; when host
or GPU memory is short, the largest n that fits, printed), C = ``--c-factor`` x C_min,
``l1_ratio`` 0.99 (Label-free CBM's alpha), the solver's default KKT tolerance 1e-4:

- the two products of a pass (``X @ W.T``, ``R.T @ X``) through numpy on all CPU cores
  and through the device backend (transfers included), and the (n, k) transfer alone;
- ours on CUDA (``device="cuda"``; the upload of ``X`` timed apart);
- ours on CPU (numpy), capped at ``--cpu-iters`` proximal-Newton iterations (a full fit
  would not fit the budget), against ours on CUDA capped the same;
- glm_saga on the same GPU at the same penalty, as Label-free CBM runs it (one penalty,
  step 0.1, batches of 256, float32), for ``--glm-epochs`` epochs;
- every solution certified by our duality gap (relative to the objective).

Without CUDA it says so and measures the torch backend on torch's CPU device against
numpy at a CPU-sized problem (n=20,000 d=500 k=10 unless given), glm_saga on CPU too.

The script keeps to ``--budget`` seconds (default 280): a part that would start after
the budget is spent is skipped and reported as such.  Results go to
``benchmarks/results/heads_gpu.json`` (``heads_gpu_cpu.json`` without CUDA)::

    python benchmarks/bench_heads_gpu.py
    python benchmarks/bench_heads_gpu.py --n 200000 --d 2000 --k 50   # smaller

BLAS threads are left as the environment sets them (all cores by default): the CPU
side is the machine the GPU is attached to, used in full.  glm_saga is in the
``bench`` extra (``pip install 'conceptlens[bench]'``); without it that part says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from conceptlens.heads import _device, _path, _solver

RESULTS = Path(__file__).resolve().parent / "results"
N_FACTORS = 12  # the concept scores' shared factors (issue 13's factor model)


def host_available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def fitting_n(n: int, d: int, k: int, device: str) -> int:
    """The largest n <= ``n`` whose fit fits in memory: host ``X`` and a working-set
    copy plus (n, k) arrays; on the device ``X``, a working-set subset and glm_saga's
    float32 copy (rounded down to 10,000 rows)."""
    per_row_host = 8 * (2.2 * d + 14 * k)
    cap = host_available_bytes() * 0.85 / per_row_host
    if device != "cpu":
        free, _total = torch.cuda.mem_get_info()
        cap = min(cap, free * 0.85 / (8 * 2.6 * d + 4 * 4 * k))
    return int(min(n, max(10_000, cap // 10_000 * 10_000)))


def make_problem(n: int, d: int, k: int, device: str, noise: float = 0.3, seed: int = 0):
    """Factor-model concept scores ``tanh(Z A / sqrt(12)) + noise N(0, 1)``, standardised,
    labels from a sparse multinomial model on 40 concepts; generated on ``device`` in
    blocks of rows, returned as a host float64 array and int labels."""
    g = torch.Generator(device=device).manual_seed(seed)
    f64 = dict(dtype=torch.float64, device=device)
    A = torch.randn(N_FACTORS, d, generator=g, **f64)
    W = torch.zeros(k, d, **f64)
    true = torch.randperm(d, generator=g, device=device)[:40]
    W[:, true] = 1.5 * torch.randn(k, 40, generator=g, **f64)
    Xd = torch.empty(n, d, **f64)
    y = torch.empty(n, dtype=torch.int64, device=device)
    block = 50_000
    for i in range(0, n, block):
        rows = min(block, n - i)
        Z = torch.randn(rows, N_FACTORS, generator=g, **f64)
        Xd[i : i + rows] = torch.tanh(Z @ A / N_FACTORS**0.5)
        Xd[i : i + rows] += noise * torch.randn(rows, d, generator=g, **f64)
    Xd -= Xd.mean(0)
    Xd /= Xd.std(0)
    for i in range(0, n, block):
        logits = Xd[i : i + block] @ W.T
        u = torch.rand(logits.shape, generator=g, **f64).clamp_min(1e-300)
        y[i : i + block] = torch.argmax(logits - torch.log(-torch.log(u)), dim=1)
    X = Xd.cpu().numpy()
    del Xd
    if device != "cpu":
        torch.cuda.empty_cache()
    return np.ascontiguousarray(X), y.cpu().numpy()


def timed(fn, *args, sync=None, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    if sync is not None:
        sync()
    return out, time.perf_counter() - t


def time_passes(X, k, dev, sync, reps):
    """Median seconds of ``X @ W.T`` and ``R.T @ X`` through numpy and the device backend,
    and of moving one (n, k) float64 array to the device and back."""
    rng = np.random.default_rng(1)
    Wt, Rt = rng.normal(size=(X.shape[1], k)), np.ascontiguousarray(rng.normal(size=(k, len(X))))
    out = {}
    for name, call in (
        ("numpy_xw", lambda: X @ Wt),
        ("numpy_rx", lambda: Rt @ X),
        ("device_xw", lambda: dev.matmul(X, Wt)),
        ("device_rx", lambda: dev.matmul(Rt, X)),
        ("transfer_nk", lambda: dev._torch.from_numpy(Rt.T.copy()).to(dev.device).cpu()),
    ):
        call()  # warm-up (BLAS threads, CUDA kernels)
        out[name] = float(np.median([timed(call, sync=sync)[1] for _ in range(reps)]))
    np.testing.assert_allclose(dev.matmul(X, Wt), X @ Wt, rtol=1e-10, atol=1e-8)
    return out


def certify(X, Y, s, W, b, lam1, lam2, dev):
    """Relative duality gap of ``(W, b)`` (our certificate; passes on ``dev``)."""
    Z = _solver._mm(X, np.ascontiguousarray(W.T), dev) + b
    m = _solver._mode_code("multinomial")
    g = _solver._gap_from_logits(X, Y, s, m, W, b, Z, lam1, lam2, 0.0, None, dev)
    return {"objective": g.primal, "gap_relative": max(g.relative, 0.0)}


class GpuBatches:
    """glm_saga's loader, without a DataLoader's per-item Python cost: shuffled
    ``(X[idx], y[idx], idx)`` batches of tensors already on the device."""

    def __init__(self, X, y, batch_size, seed=0):
        self.X, self.y, self.batch_size = X, y, batch_size
        self.g = torch.Generator(device=X.device).manual_seed(seed)

    def __iter__(self):
        perm = torch.randperm(len(self.y), generator=self.g, device=self.X.device)
        for i in range(0, len(perm), self.batch_size):
            idx = perm[i : i + self.batch_size]
            yield self.X[idx], self.y[idx], idx


def run_glm_saga(dev, y, k, lam, alpha, epochs, sync, certify_fn, target, seconds_left):
    """glm_saga at one penalty, in chunks of ``epochs`` epochs (warm: its SAGA state is
    carried over), until our certificate puts it within ``target`` of the optimum, it
    stalls (a chunk that does not lower the gap by 1%), or the time is spent.  Returns
    the chunks' (seconds so far, epochs so far, certificate) -- certification not timed."""
    try:
        from glm_saga.elasticnet import glm_saga
    except ImportError:
        print("glm_saga not installed: pip install 'conceptlens[bench]'")
        return None
    n, d = dev.X.shape
    t0 = time.perf_counter()
    X32 = dev._t.to(torch.float32)
    yt = torch.as_tensor(y, device=dev.device)
    batches = GpuBatches(X32, yt, 256)
    linear = torch.nn.Linear(d, k).to(dev.device)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    # one penalty, as Label-free CBM: glm_saga's "maximum" is lam * alpha, so its single
    # path point (k=1, epsilon=1) is lam
    meta = {
        "max_reg": {"nongrouped": lam * alpha},
        "X": {"num_examples": n},
        "y": {"num_classes": k},
    }
    state, spent, done, chunks = None, 0.0, 0, []
    while True:
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its softmax without dim=
            state = glm_saga(
                linear, batches, 0.1, epochs, alpha, epsilon=1, k=1, metadata=meta,
                do_zero=False, tol=1e-4, state=state,
            )["state"]  # fmt: skip
        sync()
        chunk = time.perf_counter() - t
        spent += chunk + (t - t0 if not chunks else 0.0)  # the float32 copy, once
        done += epochs
        W = linear.weight.detach().double().cpu().numpy()
        b = linear.bias.detach().double().cpu().numpy()
        cert = certify_fn(W, b - b.mean())
        chunks.append(dict(seconds=spent, epochs=done, nnz=int(np.count_nonzero(W)), **cert))
        print(f"  glm_saga {done} epochs {spent:.1f} s: gap {cert['gap_relative']:.1e}")
        stalled = len(chunks) > 1 and cert["gap_relative"] > 0.99 * chunks[-2]["gap_relative"]
        if cert["gap_relative"] <= target or stalled or seconds_left() < 1.5 * chunk + 10:
            break
    del X32, batches
    return chunks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu'")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--d", type=int, default=None)
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--c-factor", type=float, default=2.0, help="C = this x C_min")
    ap.add_argument("--l1-ratio", type=float, default=0.99)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=50)
    ap.add_argument(
        "--cpu-iters", type=int, default=None,
        help="numpy fit capped at this many iterations, compared with the device fit capped "
        "the same (default: 2 with CUDA, uncapped without)",
    )  # fmt: skip
    ap.add_argument("--glm-epochs", type=int, default=2, help="epochs per glm_saga chunk")
    ap.add_argument(
        "--same", type=float, default=1e-4, help="equal objective: relative gap at most this"
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget", type=float, default=280.0, help="seconds for the whole run")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # the tail survives a kill
    start = time.perf_counter()
    cuda = args.device != "cpu" and torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    label = "cuda" if cuda else "torch CPU"
    if cuda:
        sync = torch.cuda.synchronize
        n, d, k = args.n or 1_000_000, args.d or 4_000, args.k or 100
        print(f"CUDA: {torch.cuda.get_device_name()}")
    else:
        sync = None
        n, d, k = args.n or 20_000, args.d or 500, args.k or 10
        print(
            "no CUDA device (torch.cuda.is_available() is False, or --device cpu): measuring "
            "the torch backend on torch's CPU device against numpy at a CPU-sized problem; "
            "these are NOT GPU numbers."
        )
    n_fit = fitting_n(n, d, k, device)
    if n_fit < n:
        print(f"memory: n={n:,} does not fit; using the largest that does, n={n_fit:,}")
        n = n_fit
    out = {
        "device": torch.cuda.get_device_name() if cuda else "torch CPU (no CUDA)",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "n": n, "d": d, "k": k, "c_factor": args.c_factor, "l1_ratio": args.l1_ratio,
        "tol": args.tol, "skipped": [],
    }  # fmt: skip
    print(f"problem: n={n:,} d={d:,} k={k} (X {8 * n * d / 2**30:.1f} GiB float64)")
    path = Path(args.json) if args.json else RESULTS / f"heads_gpu{'' if cuda else '_cpu'}.json"

    def save():
        """Write what is measured so far (atomically): a run cut short keeps its parts."""
        out["total_s"] = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=2), encoding="utf-8")
        tmp.replace(path)

    def left():
        return args.budget - (time.perf_counter() - start)

    (X, y), out["generate_s"] = timed(make_problem, n, d, k, device)
    Y = np.eye(k)[y]
    sw = np.ones(n)
    s = sw / n
    dev, out["upload_s"] = timed(_device.TorchPasses, X, device, sync=sync)
    print(f"data {out['generate_s']:.1f} s, upload of X {out['upload_s']:.2f} s")

    out["passes"] = time_passes(X, k, dev, sync, args.reps)
    p = out["passes"]
    print(
        f"pass X @ W.T: numpy {p['numpy_xw']:.3f} s, {label} {p['device_xw']:.3f} s; "
        f"R.T @ X: numpy {p['numpy_rx']:.3f} s, {label} {p['device_rx']:.3f} s; "
        f"(n, k) there and back {p['transfer_nk']:.3f} s"
    )
    save()

    # numba's kernels loaded (or compiled) before anything is timed
    _solver.solve(X[:200, :5], Y[:200], np.full(200, 1 / 200), "multinomial", lam1=1e-2, lam2=1e-2)
    cmin = _path.c_min(X, Y, sw, "multinomial", args.l1_ratio, dev)
    C = args.c_factor * cmin
    lam1, lam2 = args.l1_ratio / (C * n), (1 - args.l1_ratio) / (C * n)
    out["C"] = C
    common = dict(l1_ratio=args.l1_ratio, tol=args.tol, gaps=True)

    res, t_dev = timed(
        _path.solve_path, X, Y, sw, "multinomial", [C], max_iter=args.max_iter, device=dev,
        **common,
    )  # fmt: skip
    W_ours, b_ours = res.coef[0], res.intercept[0]
    ours = certify(X, Y, s, W_ours, b_ours, lam1, lam2, dev)
    out["ours_device"] = dict(
        seconds=t_dev, seconds_with_upload=t_dev + out["upload_s"], n_iter=int(res.n_iter[0]),
        converged=bool(res.converged[0]), nnz=int(np.count_nonzero(W_ours)), **ours,
    )  # fmt: skip
    print(
        f"ours on {label}: {t_dev:.1f} s (+{out['upload_s']:.1f} s upload), "
        f"{int(res.n_iter[0])} iterations, converged {bool(res.converged[0])}, "
        f"{np.count_nonzero(W_ours)} non-zeros, gap {ours['gap_relative']:.1e}"
    )
    save()

    iters = int(res.n_iter[0])
    if left() < 30:
        out["skipped"].append("ours_numpy")
        print("ours on CPU (numpy): skipped, budget spent")
    else:
        cpu_iters = args.cpu_iters if args.cpu_iters is not None else (2 if cuda else 0)
        cap = max(1, min(cpu_iters, iters)) if cpu_iters > 0 else args.max_iter
        r_cpu, t_cpu = timed(
            _path.solve_path, X, Y, sw, "multinomial", [C], max_iter=cap, device=None, **common
        )
        done = int(r_cpu.n_iter[0])
        full = bool(r_cpu.converged[0])
        t_same = t_dev
        if not full:
            # like for like: the device fit capped at the same iterations
            _r, t_same = timed(
                _path.solve_path, X, Y, sw, "multinomial", [C], max_iter=done, device=dev,
                **common,
            )  # fmt: skip
        out["ours_numpy"] = dict(
            seconds=t_cpu, n_iter=done, converged=full, device_seconds_same_iters=t_same,
            max_coef_diff=float(np.abs(r_cpu.coef[0] - W_ours).max()) if full else None,
        )  # fmt: skip
        how = "" if full else f" for its first {done} iterations (capped: --cpu-iters)"
        print(f"ours on CPU (numpy): {t_cpu:.1f} s{how}; on {label} {t_same:.1f} s")
        print(
            f"RATIO ours numpy / ours on {label}, same iterations: {t_cpu / t_same:.2f}x "
            "(upload excluded)"
        )
        save()

    if left() < 30:
        out["skipped"].append("glm_saga")
        print("glm_saga: skipped, budget spent")
    else:
        lam = 1.0 / (C * n)
        chunks = run_glm_saga(
            dev, y, k, lam, args.l1_ratio, args.glm_epochs, sync or (lambda: None),
            lambda W, b: certify(X, Y, s, W, b, lam1, lam2, dev), args.same, left,
        )  # fmt: skip
        if chunks is not None:
            last = chunks[-1]
            reached = last["gap_relative"] <= args.same
            out["glm_saga"] = dict(chunks=chunks, reached_same_objective=reached)
            print(
                f"glm_saga on {label}: {last['seconds']:.1f} s for {last['epochs']} epochs, "
                f"{last['nnz']} non-zeros, gap {last['gap_relative']:.1e} "
                f"(ours {ours['gap_relative']:.1e}, equal objective: within {args.same:g})"
            )
            lower = "" if reached else " (glm_saga not yet at equal objective: a lower bound)"
            print(f"RATIO glm_saga / ours on {label}: {last['seconds'] / t_dev:.2f}x{lower}")
    save()
    print(f"wrote {path} ({out['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
