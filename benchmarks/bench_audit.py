"""Time ``conceptlens.studies.audit`` at the size of issue 16's target.

3 models x 4 splits (sites) x 6 groups (one metadata column with six values) with 1,000
stratified bootstrap replicates over 10,000 cases, three classes, paired comparisons of
every model pair (bootstrap of the difference and DeLong per class) included.  Target:
at most 10 s on 2 cores.  The first call compiles the numba kernels (cached on disk);
the timed calls follow a warm-up.

Run::

    python benchmarks/bench_audit.py [--repeats 3] [--out results/audit_timing.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr


def make_problem(n=10_000, n_models=3, n_sites=4, n_groups=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    classes = [f"class_{i}" for i in range(k)]
    models = {}
    for m in range(n_models):
        logits = rng.normal(size=(n, k)) + (1.0 + 0.3 * m) * np.eye(k)[y]
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        models[f"model_{m}"] = xr.DataArray(p, dims=("sample", "class"), coords={"class": classes})
    meta = pd.DataFrame(
        {
            "label": np.asarray(classes)[y],
            "site": rng.choice([f"site_{i}" for i in range(n_sites)], n),
            "group": rng.choice([f"g{i}" for i in range(n_groups)], n),
        }
    )
    return models, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from conceptlens.studies import audit

    models, meta = make_problem()
    t0 = time.perf_counter()
    audit(models, metadata=meta, groups=["group"], n_boot=10)  # compile / load kernels
    warm = time.perf_counter() - t0
    times = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        ds = audit(models, metadata=meta, groups=["group"], n_boot=args.n_boot, seed=r)
        times.append(time.perf_counter() - t0)
    result = {
        "cases": len(meta),
        "models": len(models),
        "splits": int(ds.sizes["split"]),
        "groups": int(meta["group"].nunique()),
        "n_boot": args.n_boot,
        "pairs": int(ds.sizes["pair"]),
        "warmup_s": round(warm, 2),
        "seconds": [round(t, 2) for t in times],
        "best_s": round(min(times), 2),
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
