"""Benchmark the numba elastic-net head against scikit-learn and glm_saga.

Problems are shaped like concept scores: cosine similarities between unit image
embeddings and clustered unit concept-text embeddings (strongly correlated columns),
standardised, with labels from a sparse multinomial model.

Run (default size n=10,000 d=500 k=7)::

    nice python benchmarks/bench_heads.py
    python benchmarks/bench_heads.py --size medium     # n=50,000 d=2,000 k=10
    python benchmarks/bench_heads.py --size large --saga-max-iter 15 --lbfgs-max-iter 100 \
        --path-len 10 --path-decades 1 --max-iter 100 --skip-glm
                                                      # n=100,000 d=4,000 k=100, capped peers

"Same objective" means within 1e-4 relative of the optimum, certified without knowing
the optimum: the Fenchel duality gap (``_solver.duality_gap``) of each solution gives a
lower bound on the optimal objective, and the best such bound (over a reference fit at
``--ref-tol``, our timed fit and saga's) bounds how far each solution is from it.  Our
timed fits use ``--tol`` (default 1e-2).  scikit-learn's saga is run once per size with
its default ``tol=1e-4`` and at most ``--saga-max-iter`` epochs (default 100): where it
stops above 1e-4 of the optimum, its time is a lower bound and the printed ratio
understates the speed-up.
BLAS threads (numpy's, scipy's and torch's) default to 1 (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``; set them in the shell to override):
scikit-learn's saga is single-threaded, and on a shared machine multi-threaded BLAS on
these skinny products can be many times slower than one thread.
``--grid`` runs instead the grid of issue 13 at the DEFAULT settings of
``SparseLinearHead`` (correlated factor-model and independent designs, k, n, d and C
axes, corners, real synthderm-lit paraphrase scores; see ``run_grid``), timing each
fit by process CPU time, and writes ``benchmarks/results/heads_grid.json``;
``--grid-table`` prints it as the markdown table of ``docs/heads.md``::

    nohup nice python benchmarks/bench_heads.py --grid --grid-real "" &
    python benchmarks/bench_heads.py --grid --grid-only real \
        --grid-json benchmarks/results/heads_grid_real.json

glm_saga (``pip install conceptlens[bench]``) runs a ``--path-len`` point path with
``--glm-epochs`` epochs per penalty (its defaults otherwise, as Label-free CBM uses it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings

# set before numpy, scipy and torch load their BLAS (see the module docstring)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

SIZES = {
    "tiny": (2_000, 100, 5),
    "small": (10_000, 500, 7),
    "medium": (50_000, 2_000, 10),
    "large": (100_000, 4_000, 100),
}


def make_scores(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    dim = 64
    centres = rng.normal(size=(k, dim))
    y = rng.integers(0, k, size=n)
    img = centres[y] * 0.4 + rng.normal(size=(n, dim))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    topics = rng.normal(size=(max(d // 20, 2), dim))
    txt = topics[rng.integers(0, len(topics), size=d)] + 0.7 * rng.normal(size=(d, dim))
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    X = img @ txt.T
    X = (X - X.mean(0)) / X.std(0)
    # relabel 15% at random so the classes are not separable
    flip = rng.random(n) < 0.15
    y[flip] = rng.integers(0, k, size=flip.sum())
    return np.ascontiguousarray(X), y


def bandwidth_gbs():
    a = np.ones(50_000_000 // 8)
    b = np.empty_like(a)
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def cold_compile_seconds():
    """Time a first solve in a fresh process with an empty numba cache (pure compile)."""
    code = (
        "import time, numpy as np; t = time.perf_counter();"
        "from conceptlens.heads import _solver;"
        "X = np.random.default_rng(0).normal(size=(50, 4)); Y = np.eye(3)[np.arange(50) % 3];"
        "_solver.solve(X, Y, np.full(50, 0.02), 'multinomial', lam1=0.01, lam2=0.01);"
        "print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=tmp)
        res = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return float(res.stdout.strip().splitlines()[-1])


def targets(y, k):
    return np.eye(k)[y]


# --------------------------------------------------------------------------------------
# --grid: default settings of SparseLinearHead across designs, against saga (issue 13)
# --------------------------------------------------------------------------------------

GRID_CENTRE = {"design": "factor0.3", "n": 6_000, "d": 300, "k": 5, "c_mult": 10.0}
GRID_AXES = {
    "design": ["independent", "factor1.0", "factor0.17"],
    "k": [2, 20, 100],
    "n": [2_000, 100_000],
    "d": [20, 4_000],
    "c_mult": [1.1, 100.0],
}
GRID_CORNERS = [
    {"design": "factor0.17", "n": 50_000, "d": 2_000, "k": 5, "c_mult": 10.0},
    {"design": "factor0.17", "n": 2_000, "d": 20, "k": 2, "c_mult": 1.1},
    {"design": "factor0.17", "n": 20_000, "d": 1_000, "k": 20, "c_mult": 100.0},
    {"design": "independent", "n": 20_000, "d": 300, "k": 100, "c_mult": 10.0},
]
GRID_SAGA_CAP_ENTRIES = 2e8  # n d k above which saga's epochs are capped at --grid-saga-cap


def grid_points():
    """The centre, each axis's other values with the rest at the centre, and the corners."""
    points = [dict(GRID_CENTRE)]
    for axis, values in GRID_AXES.items():
        for v in values:
            points.append({**GRID_CENTRE, axis: v})
    points.extend(dict(c) for c in GRID_CORNERS)
    return points


def make_design(design, n, d, k, seed=0, n_true=40, n_factors=12):
    """Standardised scores and labels: independent Gaussian or a 12-factor model.

    Factor model (issue 13): ``tanh(Z @ A / sqrt(12)) + noise * N(0, 1)`` with ``Z``
    (n, 12) and ``A`` (12, d) Gaussian, ``noise`` from the design name
    (``factor0.3``); labels from a sparse multinomial model on ``n_true`` concepts.
    """
    rng = np.random.default_rng(seed)
    if design == "independent":
        X = rng.normal(size=(n, d))
    else:
        noise = float(design.removeprefix("factor"))
        Z = rng.normal(size=(n, n_factors))
        A = rng.normal(size=(n_factors, d))
        X = np.tanh(Z @ A / np.sqrt(n_factors))
        X += noise * rng.normal(size=(n, d))
    X -= X.mean(0)
    X /= X.std(0)
    W = np.zeros((k, d))
    cols = rng.choice(d, size=min(n_true, d), replace=False)
    W[:, cols] = rng.normal(size=(k, cols.size))
    y = np.argmax(X @ W.T + rng.gumbel(size=(n, k)), axis=1)
    # with many classes one may never win the argmax: number the classes present
    y = np.unique(y, return_inverse=True)[1]
    return np.ascontiguousarray(X), y


def _paraphrase_bank(n_templates=4):
    """The shipped synthderm and dermoscopy banks' prompts, SynthDerm's caption wordings
    and held-out paraphrases, each under a few templates: one concept per (wording,
    template), hundreds of concepts (deterministic, offline)."""
    from conceptlens.concepts import ConceptBank, load_bank
    from conceptlens.synthderm._vocab import CONCEPT_PHRASES, PARAPHRASES

    phrases = []
    for bank_name in ("synthderm", "dermoscopy"):
        for c in load_bank(bank_name).concepts:
            phrases.extend(c.prompts)
    for table in (CONCEPT_PHRASES, PARAPHRASES):
        for words in table.values():
            phrases.extend(words)
    phrases = list(dict.fromkeys(p.strip() for p in phrases if p.strip()))
    templates = [
        "{}",
        "a dermoscopy image showing {}",
        "a skin lesion with {}",
        "there is {} in this image",
    ][:n_templates]
    concepts = []
    for i, p in enumerate(phrases):
        for j, t in enumerate(templates):
            concepts.append(
                {
                    "name": f"p{i}_t{j}",
                    "prompts": [t.format(p)],
                    "group": f"g{i}",
                    "provenance": {"kind": "curated", "citation": "bench"},
                }
            )
    return ConceptBank.from_dict(
        {
            "schema_version": 1,
            "id": "bench-paraphrases",
            "version": "0",
            "classes": ["nevus", "melanoma", "seborrheic_keratosis"],
            "reference_prompts": ["a dermoscopy image of skin"],
            "citations": {"bench": "generated for benchmarks/bench_heads.py"},
            "concepts": concepts,
        }
    )


def real_scores(n, seed=0):
    """Cosine concept scores of ``n`` SynthDerm ``iid`` images by synthderm-lit (image
    embeddings through the embedding cache under ``cache_root()/bench_heads``), one
    concept per paraphrase (``_paraphrase_bank``), standardised, with the diagnosis
    labels.  The same numbers as ``score_concepts(..., mode="cosine")`` for one-prompt
    concepts, computed here with one ``encode_text`` call for all prompts: through
    ``score_concepts`` each concept opened the text cache on its own, which took
    minutes for 680 concepts."""
    from conceptlens._io import cache_root
    from conceptlens.backbones import load_backbone
    from conceptlens.synthderm import SynthDerm

    batch = SynthDerm("iid").generate(n, seed=seed)
    bb = load_backbone("synthderm-lit")
    img = bb.encode_images(batch.images, cache=cache_root() / "bench_heads")
    bank = _paraphrase_bank()
    txt = bb.encode_text([c.prompts[0] for c in bank.concepts], templates=["{}"])
    X = np.asarray(img, dtype=np.float64) @ np.asarray(txt, dtype=np.float64).T
    X -= X.mean(0)
    sd = X.std(0)
    X /= np.where(sd > 0, sd, 1.0)
    return np.ascontiguousarray(X), np.asarray(batch.labels, dtype=np.int64)


def _timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def run_point(X, y, c_mult, *, saga_cap, l1=0.5, path_len=50, ref_tol=1e-8, with_path=True):
    """One grid point at the default settings: ours, saga, the reference, the path."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from conceptlens.heads import SparseLinearHead, _path, _reference, _solver, fit_path

    n, d = X.shape
    k_cls = int(y.max()) + 1
    if k_cls == 2:
        Y, mode = (y == 1).astype(float)[:, None], "sigmoid"
    else:
        Y, mode = np.eye(k_cls)[y], "multinomial"
    cmin = _path.c_min(X, Y, np.ones(n), mode, l1)
    C = c_mult * cmin
    s = np.full(n, 1.0 / n)
    lam = dict(lam1=l1 / (C * n), lam2=(1 - l1) / (C * n))
    G = X.T @ X / n
    ev = np.linalg.eigvalsh(G)
    cond = float(ev[-1] / max(ev[0], 1e-300))

    def gap(W, b):
        return _solver.duality_gap(X, Y, s, mode, W, b, **lam)

    def centred(b):
        return b - b.mean() if mode == "multinomial" else b

    head, cpu, wall = _timed(lambda: SparseLinearHead(C=C, l1_ratio=l1).fit(X, y))
    g_ours = gap(head.coef_, centred(head.intercept_))
    ref, ref_cpu, _ = _timed(
        lambda: SparseLinearHead(C=C, l1_ratio=l1, tol=ref_tol, max_iter=5000).fit(X, y)
    )
    g_ref = gap(ref.coef_, centred(ref.intercept_))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        saga, saga_cpu, saga_wall = _timed(
            lambda: LogisticRegression(C=C, l1_ratio=l1, solver="saga", max_iter=saga_cap).fit(
                X, y
            )
        )
    g_saga = gap(saga.coef_, centred(saga.intercept_))
    epochs = int(np.max(saga.n_iter_))
    dual_best = max(g_ours.dual, g_ref.dual, g_saga.dual)

    def dist(g):
        return (g.primal - dual_best) / g.primal

    path_cpu = path_wall = np.nan
    if with_path:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            path, path_cpu, path_wall = _timed(lambda: fit_path(X, y, Cs=path_len, l1_ratio=l1))
    obj_ours = _reference.objective(X, Y, head.coef_, head.intercept_, C=C, l1_ratio=l1, mode=mode)
    saga_capped = epochs >= saga_cap
    saga_within = dist(g_saga) <= 1e-4
    return {
        "n": n,
        "d": d,
        "k": k_cls,
        "C": C,
        "c_mult": c_mult,
        "cond": cond,
        "ours_cpu_s": cpu,
        "ours_wall_s": wall,
        "ours_iter": int(head.n_iter_),
        "ours_converged": bool(head.converged_),
        "ours_gap": float(head.duality_gap_),
        "ours_dist": dist(g_ours),
        "ours_nnz": int((head.coef_ != 0).sum()),
        "ours_obj": float(obj_ours),
        "ref_cpu_s": ref_cpu,
        "ref_dist": dist(g_ref),
        "saga_cpu_s": saga_cpu,
        "saga_wall_s": saga_wall,
        "saga_epochs": epochs,
        "saga_cap": saga_cap,
        "saga_capped": saga_capped,
        "saga_dist": dist(g_saga),
        "ratio_cpu": saga_cpu / cpu,
        "ratio_is_lower_bound": bool(saga_capped or not saga_within),
        "ours_within_1e-4": dist(g_ours) <= 1e-4,
        "path_len": path_len,
        "path_cpu_s": path_cpu,
        "path_wall_s": path_wall,
        "path_iter": int(path.n_iter.sum()) if with_path else None,
        "path_converged": bool(path.converged.all()) if with_path else None,
        "path_max_gap": float(np.nanmax(path.duality_gap)) if with_path else None,
        "saga_over_path_cpu": saga_cpu / path_cpu,
    }


def compile_overhead(design="factor0.3", n=6_000, d=300, k=5):
    """First fit minus second fit in a fresh process, with the on-disk numba cache warm."""
    code = (
        "import os, time\n"
        "for v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):\n"
        "    os.environ.setdefault(v, '1')\n"
        "import sys; sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[1])))\n"
        "from bench_heads import make_design\n"
        f"X, y = make_design({design!r}, {n}, {d}, {k})\n"
        "from conceptlens.heads import SparseLinearHead\n"
        "out = []\n"
        "for _ in range(2):\n"
        "    c, w = time.process_time(), time.perf_counter()\n"
        "    SparseLinearHead(C=0.02).fit(X, y)\n"
        "    out += [time.process_time() - c, time.perf_counter() - w]\n"
        "print(*out)\n"
    )
    env = dict(os.environ, CONCEPTLENS_QUIET="1")
    runs = []
    for _ in range(3):  # the first run may fill the on-disk cache
        res = subprocess.run(
            [sys.executable, "-c", code, os.path.abspath(__file__)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append([float(v) for v in res.stdout.split()[-4:]])
    c1, w1, c2, w2 = runs[-1]
    return {
        "first_fit_cpu_s": c1,
        "first_fit_wall_s": w1,
        "second_fit_cpu_s": c2,
        "second_fit_wall_s": w2,
        "overhead_cpu_s": c1 - c2,
        "overhead_wall_s": w1 - w2,
        "runs": runs,
    }


def _fmt_point(p):
    mark = ">=" if p["ratio_is_lower_bound"] else ""
    return (
        f"{p['name']:<34} cond {p['cond']:9.1f}  ours {p['ours_cpu_s']:7.3f}s cpu "
        f"({p['ours_wall_s']:6.2f} wall, {p['ours_iter']} it, dist {p['ours_dist']:.1e})  "
        f"saga {p['saga_cpu_s']:7.2f}s cpu ({p['saga_epochs']} ep, dist {p['saga_dist']:.1e})  "
        f"ratio {mark}{p['ratio_cpu']:.1f}x  path {p['path_cpu_s']:6.2f}s "
        f"(saga/path {mark}{p['saga_over_path_cpu']:.2f}x)"
    )


def grid_table(path):
    """The grid's JSON as a markdown table (one row per point, every point)."""
    with open(path, encoding="utf-8") as fh:
        out = json.load(fh)
    rows = [
        "| point | cond. X'X/n | ours: CPU s (wall), iterations, dist. | saga: CPU s (wall), "
        "epochs, dist. | saga / ours (CPU) | our 50-C path CPU s | saga / path |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in out["points"]:
        mark = ">= " if p["ratio_is_lower_bound"] else ""
        cap = f" (cap {p['saga_cap']})" if p["saga_capped"] else ""
        # more concepts than embedding dimensions: X'X/n is singular
        cond = f"{p['cond']:.0f}" if p["cond"] < 1e12 else "singular"
        ran = p.get("path_iter") is not None
        path_s = f"{p['path_cpu_s']:.2f}" if ran else "not run"
        path_ratio = f"{mark}{p['saga_over_path_cpu']:.2f}x" if ran else ""
        rows.append(
            f"| {p['name']} | {cond} | {p['ours_cpu_s']:.3f} ({p['ours_wall_s']:.2f}), "
            f"{p['ours_iter']}, {p['ours_dist']:.0e} | {p['saga_cpu_s']:.2f} "
            f"({p['saga_wall_s']:.2f}), {p['saga_epochs']}{cap}, {p['saga_dist']:.0e} | "
            f"{mark}{p['ratio_cpu']:.1f}x | {path_s} | {path_ratio} |"
        )
    return "\n".join(rows)


def run_grid(args):
    """All grid points, the real concept scores and the compile overhead -> JSON."""
    out = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "blas_threads": os.environ["OMP_NUM_THREADS"],
        "timing": "process CPU time (time.process_time) around each fit; wall next to it",
        "points": [],
    }
    only = set(args.grid_only.split(",")) if args.grid_only else None

    def save():
        os.makedirs(os.path.dirname(os.path.abspath(args.grid_json)), exist_ok=True)
        tmp = args.grid_json + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
        os.replace(tmp, args.grid_json)

    # warm the numba cache
    Xw, yw = make_design("factor0.3", 500, 30, 3)
    from conceptlens.heads import SparseLinearHead

    SparseLinearHead(C=1.0).fit(Xw, yw)
    if only is None or "compile" in only:
        out["compile"] = compile_overhead()
        c = out["compile"]
        print(
            f"compile: first fit in a fresh process {c['first_fit_cpu_s']:.3f}s cpu, second "
            f"{c['second_fit_cpu_s']:.3f}s: overhead {c['overhead_cpu_s']:.3f}s cpu "
            f"({c['overhead_wall_s']:.3f}s wall)",
            flush=True,
        )
        save()
    jobs = []
    for p in grid_points():
        name = f"{p['design']} n={p['n']} d={p['d']} k={p['k']} C={p['c_mult']}Cmin"
        jobs.append((name, p))
    for i, n_real in enumerate(args.grid_real):
        # the real scores right after the centre point; their C = 1.1 C_min variant last
        real = f"synthderm-lit paraphrases n={n_real}"
        jobs.insert(1 + i, (f"{real} C=10.0Cmin", {"real": n_real, "c_mult": 10.0}))
        jobs.append((f"{real} C=1.1Cmin", {"real": n_real, "c_mult": 1.1}))
    for name, p in jobs:
        wanted = only is None or name in only or bool(only & {"points", "all"})
        if not wanted and not ("real" in p and "real" in only):
            continue
        if "real" in p:
            X, y = real_scores(p["real"])
        else:
            X, y = make_design(p["design"], p["n"], p["d"], p["k"])
        cap = (
            args.grid_saga_cap
            if X.shape[0] * X.shape[1] * (y.max() + 1) > GRID_SAGA_CAP_ENTRIES
            else 1000
        )
        entries = X.shape[0] * X.shape[1] * (y.max() + 1)
        res = run_point(X, y, p["c_mult"], saga_cap=cap, with_path=entries <= args.grid_path_max)
        res.update(name=name, **{k: v for k, v in p.items() if k not in res})
        out["points"].append(res)
        print(_fmt_point(res), flush=True)
        save()
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    save()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--C", type=float, default=None, help="default: 10 x C_min")
    ap.add_argument("--l1-ratio", type=float, default=0.5)
    ap.add_argument("--saga-max-iter", type=int, default=100, help="saga's epoch cap")
    ap.add_argument("--max-iter", type=int, default=2000, help="our iteration cap")
    ap.add_argument("--tol", type=float, default=1e-2, help="our KKT tolerance (relative)")
    ap.add_argument(
        "--ref-tol", type=float, default=1e-6, help="KKT tolerance of the reference fit"
    )
    ap.add_argument("--path-len", type=int, default=50)
    ap.add_argument(
        "--path-decades", type=float, default=3.0, help="the path spans C_min .. C_min * 10**this"
    )
    ap.add_argument("--lbfgs-max-iter", type=int, default=10_000, help="lbfgs's iteration cap")
    ap.add_argument("--glm-epochs", type=int, default=10)
    ap.add_argument("--skip-glm", action="store_true")
    ap.add_argument(
        "--parts",
        default="fit,l2,path",
        help="comma-separated: fit (reference, ours, saga), l2 (ours vs lbfgs), path",
    )
    ap.add_argument(
        "--saga-seconds",
        type=float,
        default=None,
        help="saga's one-fit time from an earlier run (for the path ratio without 'fit')",
    )
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    ap.add_argument(
        "--grid",
        action="store_true",
        help="run the grid of designs at the default settings (see run_grid) instead",
    )
    ap.add_argument("--grid-json", default="benchmarks/results/heads_grid.json")
    ap.add_argument(
        "--grid-table", action="store_true", help="print --grid-json as a markdown table"
    )
    ap.add_argument(
        "--grid-only", default=None, help="comma-separated point names, 'compile' or 'real'"
    )
    ap.add_argument(
        "--grid-path-max",
        type=float,
        default=2e7,
        help="run the 50-C path only where n d k is at most this (time budget)",
    )
    ap.add_argument(
        "--grid-saga-cap",
        type=int,
        default=30,
        help="saga's epoch cap at the grid's biggest points (n d k > 2e8)",
    )
    ap.add_argument(
        "--grid-real",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[2000],
        help="SynthDerm image counts for the real-score points (comma-separated)",
    )
    args = ap.parse_args()
    if args.grid_table:
        print(grid_table(args.grid_json))
        return
    if args.grid:
        run_grid(args)
        return

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from conceptlens.heads import _path, _reference, _solver

    n, d, k = SIZES[args.size]
    parts = set(args.parts.split(","))
    out: dict = {"size": [n, d, k]}
    t = time.perf_counter()
    Xt, yt = make_scores(200, 20, 3)
    _solver.solve(Xt, targets(yt, 3), np.full(200, 1 / 200), "multinomial", lam1=1e-2, lam2=1e-2)
    out["first_call_s"] = time.perf_counter() - t  # numba cache load (or compile)
    out["compile_s"] = cold_compile_seconds()
    X, y = make_scores(n, d, k)
    Y = targets(y, k)
    sw = np.ones(n)
    cmin = _path.c_min(X, Y, sw, "multinomial", args.l1_ratio)
    C = args.C or 10 * cmin
    l1 = args.l1_ratio
    out["C"] = C
    print(
        f"n={n} d={d} k={k} C={C:.3g} l1_ratio={l1}  (compile, empty numba cache: "
        f"{out['compile_s']:.1f} s; first call with the cache: {out['first_call_s']:.2f} s; "
        f"BLAS threads {os.environ['OMP_NUM_THREADS']})"
    )

    def obj(W, b, l1r=l1):
        return _reference.objective(X, Y, W, b, C=C, l1_ratio=l1r, mode="multinomial")

    s = np.full(n, 1.0 / n)  # the solver's normalised sample weights
    scale = np.abs(_solver.grad_scale(X, Y, s, 0)).max()  # KKT tolerances are relative to it

    def ours(l1r, tol=1e-5):
        t0 = time.perf_counter()
        r = _solver.solve(
            X,
            Y,
            s,
            "multinomial",
            lam1=l1r / (C * n),
            lam2=(1 - l1r) / (C * n),
            tol_abs=tol * scale,
            max_iter=args.max_iter,
        )
        return r, time.perf_counter() - t0

    # warm the numba cache and torch's BLAS (the first large product imports torch)
    m_w = min(n, 20_000)
    _solver.solve(
        X[:m_w, :100],
        Y[:m_w],
        np.full(m_w, 1.0 / m_w),
        "multinomial",
        lam1=1e-3,
        lam2=1e-3,
        tol_abs=1e-3,
        max_iter=20,
    )
    lam1, lam2 = l1 / (C * n), (1 - l1) / (C * n)

    def dual_gap(W, b):
        return _solver.duality_gap(X, Y, s, "multinomial", W, b, lam1=lam1, lam2=lam2)

    t_saga = args.saga_seconds
    if "fit" in parts:
        ref, t_ref = ours(l1, tol=args.ref_tol)
        g_ref = dual_gap(ref.coef, ref.intercept)
        f_ref = obj(ref.coef, ref.intercept)
        tracemalloc.start()
        res, t_ours = ours(l1, tol=args.tol)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        f_ours = obj(res.coef, res.intercept)
        g_ours = dual_gap(res.coef, res.intercept)
        bw = bandwidth_gbs()
        per_pass = t_ours / res.n_passes
        bound8 = n * d * 8 / (bw * 1e9)
        bound4 = n * d * 4 / (bw * 1e9)
        out.update(
            ref_s=t_ref,
            ref_obj=f_ref,
            ref_iter=ref.n_iter,
            ours_s=t_ours,
            ours_obj=f_ours,
            ours_iter=res.n_iter,
            ours_passes=res.n_passes,
            ours_nnz=int((res.coef != 0).sum()),
            peak_mb=peak / 1e6,
            bandwidth_gbs=bw,
            per_pass_s=per_pass,
            pass_bound_f64_s=bound8,
            pass_bound_f32_s=bound4,
        )

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            saga = LogisticRegression(
                C=C, l1_ratio=l1, solver="saga", tol=1e-4, max_iter=args.saga_max_iter
            ).fit(X, y)
        t_saga = time.perf_counter() - t0
        f_saga = obj(saga.coef_, saga.intercept_)
        g_saga = dual_gap(saga.coef_, saga.intercept_)
        epochs = int(saga.n_iter_[0])
        # the best dual value bounds the optimum from below: (f - bound) / f is a certified
        # upper bound on a solution's relative distance to the optimal objective
        dual_best = max(g_ref.dual, g_ours.dual, g_saga.dual)

        def certified(g):
            return (g.primal - dual_best) / g.primal

        out.update(
            saga_s=t_saga,
            saga_obj=f_saga,
            saga_epochs=epochs,
            ref_certified=certified(g_ref),
            ours_certified=certified(g_ours),
            saga_certified=certified(g_saga),
        )
        print(
            f"reference {t_ref:8.2f} s  obj {f_ref:.6f}  within {certified(g_ref):.1e} of the "
            f"optimum (ours at tol={args.ref_tol}, {ref.n_iter} iters; certified by the "
            "duality gap)"
        )
        print(
            f"ours      {t_ours:8.2f} s  obj {f_ours:.6f}  within {certified(g_ours):.1e}  "
            f"(tol={args.tol})  iters {res.n_iter}  passes {res.n_passes}  nnz "
            f"{out['ours_nnz']}  peak {peak / 1e6:.0f} MB (numpy, tracemalloc)"
        )
        print(
            f"per pass  {per_pass * 1e3:8.2f} ms  vs bandwidth bound {bound8 * 1e3:.2f} ms "
            f"(float64; {bound4 * 1e3:.2f} ms at 4 B/value) at {bw:.1f} GB/s copy bandwidth; "
            "time per pass includes coordinate descent and line search"
        )
        capped = epochs >= args.saga_max_iter
        print(
            f"sk saga   {t_saga:8.2f} s  obj {f_saga:.6f}  within {certified(g_saga):.1e}  epochs "
            f"{epochs} (tol=1e-4, cap {args.saga_max_iter}{': reached' if capped else ''})"
        )
        same = certified(g_ours) <= 1e-4
        note = ""
        if certified(g_saga) > 1e-4:
            note = "  (saga stopped above 1e-4 of the optimum: its time is a lower bound)"
        print(
            f"RATIO saga/ours one fit: {t_saga / t_ours:.1f}x"
            + ("" if same else "  (ours NOT within 1e-4 of the optimum)")
            + note
        )

    if "l2" in parts:
        res2, t_ours2 = ours(0.0, tol=args.tol)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            lb = LogisticRegression(
                C=C, l1_ratio=0.0, solver="lbfgs", tol=1e-6, max_iter=args.lbfgs_max_iter
            ).fit(X, y)
        t_lb = time.perf_counter() - t0
        lb_capped = int(lb.n_iter_[0]) >= args.lbfgs_max_iter
        f2, flb = obj(res2.coef, res2.intercept, 0.0), obj(lb.coef_, lb.intercept_, 0.0)
        out.update(l2_ours_s=t_ours2, lbfgs_s=t_lb, l2_ours_obj=f2, lbfgs_obj=flb)
        print(
            f"L2 case   ours {t_ours2:.2f} s obj {f2:.6f} | lbfgs {t_lb:.2f} s obj {flb:.6f} "
            f"({int(lb.n_iter_[0])} iterations{', cap reached' if lb_capped else ''})"
        )
        print(f"RATIO lbfgs/ours (L2): {t_lb / t_ours2:.1f}x")

    if "path" in parts:
        Cs = cmin * np.logspace(0, args.path_decades, args.path_len)
        t0 = time.perf_counter()
        path = _path.solve_path(X, Y, sw, "multinomial", Cs, l1_ratio=l1, tol=args.tol)
        t_path = time.perf_counter() - t0
        nnz = path.n_nonzero.sum(1)
        acc = [
            float(((X @ path.coef[i].T + path.intercept[i]).argmax(1) == y).mean())
            for i in range(len(Cs))
        ]
        out.update(
            path_s=t_path,
            path_iters=int(path.n_iter.sum()),
            path_converged=bool(path.converged.all()),
        )
        print(
            f"path      {t_path:8.2f} s for {len(Cs)} penalties ({int(path.n_iter.sum())} "
            f"iterations); nnz {nnz[0]}..{nnz[-1]}, train acc {acc[0]:.3f}..{acc[-1]:.3f}"
        )
        if t_saga is not None:
            print(
                f"RATIO one saga fit / our {len(Cs)}-point path: {t_saga / t_path:.2f}x"
                + ("" if "fit" in parts else " (saga's time from --saga-seconds)")
            )

    if "path" in parts and not args.skip_glm:
        try:
            import torch
            from glm_saga.elasticnet import IndexedTensorDataset, glm_saga
        except ImportError:
            print("glm_saga not installed: pip install 'conceptlens[bench]'")
        else:
            torch.manual_seed(0)
            ds = IndexedTensorDataset(torch.tensor(X, dtype=torch.float32), torch.tensor(y))
            loader = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=True)
            linear = torch.nn.Linear(d, k)
            torch.nn.init.zeros_(linear.weight)
            torch.nn.init.zeros_(linear.bias)
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                out_glm = glm_saga(
                    linear,
                    loader,
                    0.1,
                    args.glm_epochs,
                    l1,
                    epsilon=10.0**-args.path_decades,
                    k=args.path_len,
                    verbose=None,
                    tol=1e-4,
                    do_zero=False,
                )
            t_glm = time.perf_counter() - t0
            W = linear.weight.detach().numpy()
            gacc = float(((X @ W.T + linear.bias.detach().numpy()).argmax(1) == y).mean())
            out.update(glm_s=t_glm, glm_nnz=int((W != 0).sum()), glm_acc=gacc)
            print(
                f"glm_saga  {t_glm:8.2f} s for {args.path_len} penalties x "
                f"{args.glm_epochs} epochs; final nnz {int((W != 0).sum())}, train acc "
                f"{gacc:.3f} (ours at the last point: nnz {nnz[-1]}, acc {acc[-1]:.3f})"
            )
            print(f"RATIO glm_saga/ours path: {t_glm / t_path:.1f}x")
            del out_glm
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
