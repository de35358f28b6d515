"""Benchmark concept scoring: throughput, cache hits, the scoring matmul, streamed memory.

Run (2 CPU cores, nobody else busy ideally)::

    OMP_NUM_THREADS=2 nice .venv/bin/python benchmarks/bench_scoring.py
    .venv/bin/python benchmarks/bench_scoring.py --only-memory --memory-ns 1000,100000

It prints, for synthderm-lit (trained weights if shipped, else its architecture with random
weights) and for a ViT-B/16 with random weights (compute does not depend on weights):

1. images/s through ``score_concepts`` vs a plain open_clip loop (same model, same batch
   size, same pre-decoded uint8 images; the loop does normalise -> encode_image ->
   normalise -> matmul), and the ratio;
2. cache-hit speedup: ``score_concepts`` with a warm embedding cache vs encoding;
3. scoring d concepts on n cached embeddings as one matmul per block, in GFLOP/s, against
   numpy's measured float32 matmul rate on this machine;
4. peak resident memory while scoring more and more images generated on the fly (nothing
   materialised) in one process: synthderm-lit (``--memory-ns``) and a 32 px random ViT
   (``--tiny-ns``, default up to 100,000) that isolates the streaming machinery.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np
import pandas as pd
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CONCEPTLENS_QUIET", "1")


def _bank():
    from conceptlens.concepts import ConceptBank, load_bank

    try:
        return load_bank("synthderm")
    except Exception:
        return ConceptBank.from_dict(
            {
                "schema_version": 1,
                "id": "bench",
                "version": "0",
                "classes": ["a", "b"],
                "reference_prompts": ["a dermoscopy image of skin"],
                "concepts": [
                    {"name": f"c{i}", "prompts": [f"concept {i}"], "group": "g"} for i in range(17)
                ],
            }
        )


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    try:
        from conceptlens import SynthDerm

        return SynthDerm("iid", image_size=size).generate(n, seed=seed).images
    except Exception:
        return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _dataset(imgs: np.ndarray):
    from conceptlens.data import ImageDataset

    meta = pd.DataFrame({"label": np.zeros(len(imgs), int)})
    return ImageDataset.from_arrays(imgs, meta, classes=["x"])


def _plain_loop(model, imgs, text, mean, std, batch) -> float:
    """The baseline: what a user writes with open_clip directly."""
    t0 = time.perf_counter()
    out = []
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    with torch.inference_mode():
        for i in range(0, len(imgs), batch):
            x = torch.from_numpy(imgs[i : i + batch]).permute(0, 3, 1, 2).float() / 255.0
            f = model.encode_image((x - m) / s)
            f = f / f.norm(dim=-1, keepdim=True)
            out.append(f.numpy() @ text.T)
    np.concatenate(out)
    return time.perf_counter() - t0


def _load(name: str, batch: int):
    from conceptlens.backbones import load_backbone

    if name == "synthderm-lit":
        try:
            return load_backbone("synthderm-lit", batch_size=batch), "trained weights"
        except Exception:
            return load_backbone("synthderm-lit", batch_size=batch, pretrained=False), "random"
    import open_clip

    from conceptlens.backbones._backbone import Backbone
    from conceptlens.backbones._loading import LoadedModel
    from conceptlens.backbones._registry import get_backbone_config

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    cfg = get_backbone_config("openai-vit-b-16")
    tok = open_clip.get_tokenizer("ViT-B-16")
    return Backbone(LoadedModel(cfg, model, tok, None, "random"), batch_size=batch), "random"


def throughput(name: str, n: int, batch: int, repeats: int) -> dict:
    from conceptlens.concepts import score_concepts
    from conceptlens.concepts._scoring import concept_text_embeddings

    bb, weights = _load(name, batch)
    bank = _bank()
    imgs = _images(n, bb.image_size)
    ds = _dataset(imgs)
    text, _, _ = concept_text_embeddings(bb, bank)
    cfg = bb.config
    # warm-up both paths once
    score_concepts(bb, _dataset(imgs[:batch]), bank, show_progress=False)
    _plain_loop(bb.model, imgs[:batch], text, cfg.mean, cfg.std, batch)
    t_ours, t_plain = [], []
    for _ in range(repeats):  # interleaved, best of
        t0 = time.perf_counter()
        score_concepts(bb, ds, bank, show_progress=False)
        t_ours.append(time.perf_counter() - t0)
        t_plain.append(_plain_loop(bb.model, imgs, text, cfg.mean, cfg.std, batch))
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        score_concepts(bb, ds, bank, cache=cache, show_progress=False)
        t_cold = time.perf_counter() - t0
        hits = []
        for _ in range(3):
            bb.n_image_encodes = 0
            t0 = time.perf_counter()
            score_concepts(bb, ds, bank, cache=cache, show_progress=False)
            hits.append(time.perf_counter() - t0)
            assert bb.n_image_encodes == 0
    ours, plain, hit = min(t_ours), min(t_plain), min(hits)
    return {
        "backbone": f"{name} ({weights})",
        "n": n,
        "batch": batch,
        "ours_img_s": n / ours,
        "plain_img_s": n / plain,
        "ratio": plain / ours,
        "cold_cache_img_s": n / t_cold,
        "hit_img_s": n / hit,
        "hit_speedup": ours / hit,
    }


def matmul_rate(n: int, d: int, dim: int) -> dict:
    from conceptlens.concepts._scoring import DEFAULT_BLOCK_SIZE, _block_scores, _score_matrix

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    text = rng.standard_normal((d, dim), dtype=np.float32)
    ref = rng.standard_normal(dim, dtype=np.float32)
    out = np.empty((n, d), np.float32)

    def ours() -> None:  # what score_concepts does on cached embeddings (relative mode)
        w = _score_matrix(text, ref)
        for b0 in range(0, n, DEFAULT_BLOCK_SIZE):
            sl = slice(b0, b0 + DEFAULT_BLOCK_SIZE)
            _block_scores(emb[sl], w, out=out[sl])

    def best(fn, k=5) -> float:
        ts = []
        for _ in range(k):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    t = best(ours)
    flops = 2.0 * n * dim * d
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    t_sq = best(lambda: a @ a)
    peak = 2.0 * 2048**3 / t_sq
    one = best(lambda: emb @ text.T)
    return {
        "n": n,
        "d": d,
        "dim": dim,
        "scoring_gflops": flops / t / 1e9,
        "scoring_gb_s": (emb.nbytes + out.nbytes) / t / 1e9,
        "single_matmul_gflops": 2.0 * n * dim * d / one / 1e9,
        "numpy_square_gflops": peak / 1e9,
        "ratio_to_square": (flops / t) / peak,
    }


class _Streamed:
    """An ImageDataset-like source that draws each image on demand (nothing stored)."""

    def __init__(self, n: int, size: int) -> None:
        self.n, self.size = n, size
        self.ids = [f"g{i:07d}" for i in range(n)]
        self.metadata = pd.DataFrame(index=pd.Index(self.ids, name="id"))

    def __len__(self) -> int:
        return self.n

    def load_image(self, i: int) -> np.ndarray:
        rng = np.random.default_rng(i)
        return rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _tiny_vit():
    """A 32 px random ViT: isolates the streaming machinery from model compute."""
    import open_clip

    from conceptlens.backbones._backbone import Backbone
    from conceptlens.backbones._loading import LoadedModel
    from conceptlens.backbones._registry import BackboneConfig

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=64,
        vision_cfg={"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    ).eval()
    cfg = BackboneConfig(name="tiny-vit-32", loader="open_clip", model="tiny", image_size=32)
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer(context_length=16)
    return Backbone(LoadedModel(cfg, model, tok, None, "random"), batch_size=256)


def memory(ns: list[int], which: str) -> list[dict]:
    """Peak RSS after scoring n images drawn on demand, for increasing n in one process."""
    from conceptlens.concepts import score_concepts

    bb = _load("synthderm-lit", 256)[0] if which == "synthderm-lit" else _tiny_vit()
    bank = _bank()
    rows = []
    for n in ns:
        t0 = time.perf_counter()
        scores = score_concepts(bb, _Streamed(n, bb.image_size), bank, show_progress=False)
        rows.append(
            {
                "backbone": which,
                "n": n,
                "peak_rss_mb": _maxrss_mb(),
                "result_mb": scores.values.nbytes / 2**20,
                "materialised_mb": n * (bb.image_size**2 * 3 + bb.embed_dim * 4) / 2**20,
                "img_s": n / (time.perf_counter() - t0),
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lit-n", type=int, default=1024)
    p.add_argument("--vit-n", type=int, default=48)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--memory-ns", default="1000,8000", help="synthderm-lit streamed runs")
    p.add_argument(
        "--tiny-ns", default="2000,20000,100000", help="tiny-ViT streamed runs (machinery only)"
    )
    p.add_argument("--skip-vit", action="store_true")
    p.add_argument("--only-memory", action="store_true")
    a = p.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, cpu count: {os.cpu_count()}")
    if not a.only_memory:
        rows = [throughput("synthderm-lit", a.lit_n, 256, a.repeats)]
        if not a.skip_vit:
            rows.append(throughput("vit-b-16", a.vit_n, 16, a.repeats))
        print("\n## images/s (CPU)\n")
        print(
            "| backbone | n | batch | score_concepts img/s | plain open_clip img/s | "
            "ours/plain | cold cache img/s | cache hit img/s | hit speedup |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['backbone']} | {r['n']} | {r['batch']} | {r['ours_img_s']:.1f} | "
                f"{r['plain_img_s']:.1f} | {r['ratio']:.2f} | {r['cold_cache_img_s']:.1f} | "
                f"{r['hit_img_s']:.0f} | {r['hit_speedup']:.0f}x |"
            )
        m = matmul_rate(100_000, 200, 384)
        print("\n## scoring matmul\n")
        print(
            f"n={m['n']} embeddings x d={m['d']} concepts (dim {m['dim']}, relative mode): "
            f"{m['scoring_gflops']:.1f} GFLOP/s ({m['scoring_gb_s']:.2f} GB/s of "
            "embeddings+scores); "
            f"one unblocked matmul {m['single_matmul_gflops']:.1f} GFLOP/s; numpy 2048^2 square "
            f"matmul {m['numpy_square_gflops']:.1f} GFLOP/s; ratio {m['ratio_to_square']:.2f}"
        )
    print("\n## streamed memory (images drawn on demand; peak RSS of one process)\n")
    print(
        "| backbone | n | peak RSS MB | result MB | images+embeddings if materialised MB | img/s |"
    )
    print("|---|---|---|---|---|---|")
    # tiny first: peak RSS is a process-wide maximum
    for which, ns in (("tiny-vit-32", a.tiny_ns), ("synthderm-lit", a.memory_ns)):
        if not ns:
            continue
        for r in memory([int(x) for x in ns.split(",")], which):
            print(
                f"| {r['backbone']} | {r['n']} | {r['peak_rss_mb']:.0f} | {r['result_mb']:.1f} | "
                f"{r['materialised_mb']:.0f} | {r['img_s']:.0f} |"
            )


if __name__ == "__main__":
    main()
