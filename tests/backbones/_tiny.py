"""Tiny randomly initialised open_clip models written as checkpoints, for offline tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

TEXT_CFG = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}

#: open_clip's own ViT, average-pooled: pooled = mean(ln_post(patches)) @ proj
VIT_AVG = {
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 32,
        "patch_size": 8,
        "width": 64,
        "layers": 2,
        "head_width": 32,
        "pool_type": "avg",
    },
    "text_cfg": TEXT_CFG,
}
#: open_clip's own ViT with the class token (the CLIP default)
VIT_TOK = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": TEXT_CFG,
}
#: timm trunk as in BiomedCLIP (timm_pool "" = the trunk's token pooling, linear proj)
TIMM_TOK = {
    "embed_dim": 32,
    "vision_cfg": {
        "timm_model_name": "test_vit",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "image_size": 160,
    },
    "text_cfg": TEXT_CFG,
}
#: timm trunk re-pooled by open_clip with "avg"
TIMM_AVG = {
    **TIMM_TOK,
    "vision_cfg": {**TIMM_TOK["vision_cfg"], "timm_pool": "avg"},
}


def build(cfg: dict, seed: int = 0) -> torch.nn.Module:
    import open_clip

    torch.manual_seed(seed)
    return open_clip.CLIP(**json.loads(json.dumps(cfg))).eval()


def write_checkpoint(cfg: dict, path: Path, seed: int = 0, preprocess: dict | None = None) -> Path:
    """Random model -> safetensors with its open_clip config in the metadata."""
    from safetensors.torch import save_file

    model = build(cfg, seed)
    meta = {"model_cfg": cfg}
    if preprocess:
        meta["preprocess_cfg"] = preprocess
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path), metadata={"open_clip_config": json.dumps(meta)})
    return path


def tiny_backbone(tmp_path: Path, cfg: dict = VIT_AVG, seed: int = 0, **kw):
    from conceptlens.backbones import load_backbone

    path = write_checkpoint(cfg, Path(tmp_path) / f"tiny-{seed}-{id(cfg)}.safetensors", seed)
    return load_backbone(path, **kw)


def images(n: int, size: tuple[int, int] = (40, 48), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)


def dataset(n: int, size: tuple[int, int] = (40, 48), seed: int = 0):
    from conceptlens.data import ImageDataset

    rng = np.random.default_rng(seed + 1)
    meta = pd.DataFrame(
        {
            "label": rng.integers(0, 2, n),
            "site": rng.choice(["site_a", "site_b"], n),
            "age": rng.integers(20, 80, n).astype(float),
        },
        index=[f"s{i:03d}" for i in range(n)],
    )
    return ImageDataset.from_arrays(images(n, size, seed), meta, classes=["benign", "malignant"])


def tiny_bank(reference: bool = True, templates: tuple[str, ...] = ("{}",)):
    from conceptlens.concepts import ConceptBank

    data = {
        "schema_version": 1,
        "id": "toy",
        "version": "0.1.0",
        "classes": ["benign", "malignant"],
        "templates": list(templates),
        "concepts": [
            {
                "name": "red_dots",
                "prompts": ["red dots", "small red dots"],
                "group": "colour",
                "provenance": {"kind": "curated"},
            },
            {
                "name": "ruler",
                "prompts": ["a ruler"],
                "group": "artifact",
                "provenance": {"kind": "llm", "model": "x", "prompt_hash": "y", "date": "2025"},
            },
            {
                "name": "irregular_border",
                "prompts": ["irregular border", "ragged edge", "notched outline"],
                "group": "morphology",
                "provenance": {"kind": "curated"},
            },
        ],
    }
    if reference:
        data["reference_prompts"] = ["a dermoscopy image of skin", "a photo of skin"]
    return ConceptBank.from_dict(data)
