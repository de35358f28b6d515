"""Per-site imaging protocol: config validation, the transform against dense references,
and the promise that presets without a protocol draw exactly what they drew before."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conceptlens.synthderm import SynthDerm

# Recorded from the generator before the protocol transform existed (commit a4b406c):
# first 16 hex digits of sha256 over the images, over the lesion + artifact masks, and over
# labels, skin tones, concepts, sites and captions.
_REFERENCE = {
    ("confounded", 70, 0): ("51b42195bb54cdb9", "7a8c62a72924afa7", "01d5cee856a85189"),
    ("confounded", 9, 5): ("e33cdb5f88f6b158", "b3daca1d8643192f", "3268cae0dbe701a7"),
    ("iid", 70, 0): ("c235852613778dbf", "7c31e8e4a8692914", "5e9b7e221abd1c56"),
    ("iid", 9, 5): ("6a75d066535434ef", "6716db4d5dadb6b0", "bd1e24aae252598a"),
    ("skin-tone-shift", 70, 0): ("e9a548a93ffb797d", "7c31e8e4a8692914", "770767c6f5a2d7d3"),
    ("skin-tone-shift", 9, 5): ("1d15a890e03fdfb1", "6716db4d5dadb6b0", "883ee6c83d54376e"),
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _digest(batch) -> tuple[str, str, str]:
    masks = np.concatenate(
        [batch.lesion_mask[None]]
        + [batch.artifact_masks[a][None] for a in sorted(batch.artifact_masks)]
    )
    latents = np.concatenate(
        [
            batch.labels.astype(np.int64),
            batch.skin_tone.astype(np.int64),
            batch.concepts.astype(np.int64).ravel(),
        ]
    )
    text = "|".join(map(str, batch.site)).encode() + "|".join(batch.captions).encode()
    return (
        _sha(np.ascontiguousarray(batch.images).tobytes()),
        _sha(np.ascontiguousarray(masks).tobytes()),
        _sha(latents.tobytes() + text),
    )


@pytest.mark.parametrize(("preset", "n", "seed"), sorted(_REFERENCE))
def test_presets_without_protocol_draw_the_same_bytes(preset: str, n: int, seed: int) -> None:
    assert _digest(SynthDerm(preset).generate(n, seed=seed)) == _REFERENCE[(preset, n, seed)]
