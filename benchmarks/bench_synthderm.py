"""SynthDerm generation speed, per core, against two named peers measured in the same run.

Peers:

* **Pillow PNG decode** -- reading the same number of 96x96 SynthDerm PNG files with
  ``PIL.Image.open`` + ``np.asarray`` (what a dataset on disk costs to load);
* **skimage.draw per image** -- a deliberately simple per-image drawing loop with
  ``skimage.draw`` (skin, one ellipse lesion, a few dots, two hair lines, a ruler bar):
  the usual way such generators are written, doing far less than SynthDerm.

Run on one core::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_synthderm.py --n 2048

It prints images per second per core for each and the ratios.

``--probe`` instead runs a learnability check: a small CNN (4 strided convolutions with
batch norm, global average pooling, 17 logits; 100k parameters) is trained with a
one-cycle learning-rate schedule and a multi-label loss on the ground-truth concepts of
``--probe-train`` ``iid`` images for ``--probe-epochs`` epochs on one CPU thread, then the
AUROC of each concept is printed on 1,000 fresh images. A concept that a small supervised
network cannot pick up is drawn too faintly or too small.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _best_rate(fn, n: int, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        dt = time.process_time() - t0
        best = max(best, n / dt)
    return best


def bench_synthderm(n: int, size: int, preset: str, repeats: int) -> tuple[float, np.ndarray]:
    from conceptlens import SynthDerm

    gen = SynthDerm(preset, image_size=size)
    gen.generate(64, seed=123)  # warm up
    rate = _best_rate(lambda: gen.generate(n, seed=1), n, repeats)
    return rate, gen.generate(min(n, 512), seed=1).images


def bench_png_decode(images: np.ndarray, n: int, repeats: int) -> float:
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, img in enumerate(images):
            p = Path(tmp) / f"{i}.png"
            Image.fromarray(img).save(p)
            paths.append(p)
        order = [paths[i % len(paths)] for i in range(n)]

        def decode() -> None:
            for p in order:
                with Image.open(p) as im:
                    np.asarray(im.convert("RGB"))

        return _best_rate(decode, n, repeats)


def bench_skimage_draw(n: int, size: int, repeats: int) -> float:
    from skimage import draw

    rng = np.random.default_rng(0)

    def run() -> None:
        for _ in range(n):
            img = np.empty((size, size, 3), dtype=np.uint8)
            img[:] = rng.integers(150, 240, 3)
            img += rng.integers(0, 8, (size, size, 1), dtype=np.uint8)
            rr, cc = draw.ellipse(size / 2, size / 2, size * 0.2, size * 0.25, shape=img.shape)
            img[rr, cc] = (110, 70, 45)
            for _ in range(10):
                rr, cc = draw.disk(tuple(rng.uniform(30, 66, 2)), 1.5, shape=img.shape)
                img[rr, cc] = (20, 10, 5)
            for _ in range(2):
                r0, c0, r1, c1 = rng.integers(0, size, 4)
                rr, cc, val = draw.line_aa(r0, c0, r1, c1)
                img[rr, cc] = (img[rr, cc] * (1 - val[:, None])).astype(np.uint8)
            rr, cc = draw.rectangle((0, 0), (9, size - 1), shape=img.shape)
            img[rr, cc] = (230, 230, 210)

    return _best_rate(run, n, repeats)


def probe_learnability(n_train: int, epochs: int, seed: int = 0) -> dict[str, float]:
    import torch
    from sklearn.metrics import roc_auc_score
    from torch import nn

    from conceptlens import SynthDerm

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    train = SynthDerm("iid").generate(n_train, seed=100 + seed)
    test = SynthDerm("iid").generate(1000, seed=200 + seed)

    def prep(images: np.ndarray) -> torch.Tensor:
        return torch.tensor(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)

    x_train, x_test = prep(train.images), prep(test.images)
    y_train = torch.tensor(train.concepts).float()
    layers: list[nn.Module] = []
    width = 3
    for out in (32, 48, 64, 96):
        layers += [nn.Conv2d(width, out, 3, 2, 1), nn.BatchNorm2d(out), nn.ReLU()]
        width = out
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 17))
    opt = torch.optim.AdamW(net.parameters(), 3e-3)
    steps = epochs * ((n_train + 127) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(n_train)
        for start in range(0, n_train, 128):
            idx = order[start : start + 128]
            loss = nn.functional.binary_cross_entropy_with_logits(net(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
        print(f"  epoch {epoch}: loss {float(loss.detach()):.3f}", flush=True)
    net.eval()
    with torch.no_grad():
        scores = net(x_test).numpy()
    return {
        name: float(roc_auc_score(test.concepts[:, j], scores[:, j]))
        for j, name in enumerate(test.concept_names)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--preset", default="iid")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probe", action="store_true", help="run the learnability check")
    parser.add_argument("--probe-train", type=int, default=5000)
    parser.add_argument("--probe-epochs", type=int, default=14)
    args = parser.parse_args()
    if args.probe:
        t0 = time.perf_counter()
        result = probe_learnability(args.probe_train, args.probe_epochs)
        print(f"Concept AUROC of a small supervised CNN ({time.perf_counter() - t0:.0f} s):")
        for name, value in result.items():
            print(f"  {name:26s} {value:.3f}")
        print(f"  {'mean':26s} {np.mean(list(result.values())):.3f}")
        return
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"SynthDerm benchmark: n={args.n}, {args.size}x{args.size}, preset={args.preset}, ")
    print(f"OMP_NUM_THREADS={threads}, rate = images / CPU second (best of {args.repeats})")
    synth, images = bench_synthderm(args.n, args.size, args.preset, args.repeats)
    png = bench_png_decode(images, args.n, args.repeats)
    sk = bench_skimage_draw(args.n, args.size, args.repeats)
    print(f"  SynthDerm.generate           {synth:9.0f} images/s/core")
    print(f"  Pillow PNG decode (peer)     {png:9.0f} images/s/core")
    print(f"  skimage.draw per image (peer){sk:9.0f} images/s/core")
    print(f"  ratio SynthDerm / PNG decode     {synth / png:5.2f}")
    print(f"  ratio SynthDerm / skimage.draw   {synth / sk:5.2f}")


if __name__ == "__main__":
    main()
