"""Fixtures for the data-layer tests: real scikit-image medical images written as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def skimage_images() -> dict[str, np.ndarray]:
    """scikit-image's real medical images, cropped to keep tests fast (retina 1411px)."""
    import skimage.data as data

    return {
        "retina": data.retina()[300:460, 400:560],  # RGB fundus crop, 160x160
        "immunohistochemistry": data.immunohistochemistry()[:128, :96],  # RGB IHC, 128x96
        "microaneurysms": data.microaneurysms(),  # greyscale retina, 102x102
    }


@pytest.fixture
def png_folder(tmp_path: Path, skimage_images: dict[str, np.ndarray]) -> Path:
    """A class-per-folder tree: fundus/{retina,microaneurysms}.png, pathology/ihc.png."""
    root = tmp_path / "images"
    (root / "fundus").mkdir(parents=True)
    (root / "pathology").mkdir()
    Image.fromarray(skimage_images["retina"]).save(root / "fundus" / "retina.png")
    Image.fromarray(skimage_images["microaneurysms"]).save(root / "fundus" / "microaneurysms.png")
    Image.fromarray(skimage_images["immunohistochemistry"]).save(root / "pathology" / "ihc.png")
    return root
