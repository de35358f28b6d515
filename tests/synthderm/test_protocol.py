"""Per-site imaging protocol: config validation, the transform against dense references,
and the promise that presets without a protocol draw exactly what they drew before."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conceptlens.exceptions import ConfigError
from conceptlens.synthderm import (
    SYNTHDERM_CLASSES,
    SynthDerm,
    SynthDermConfig,
    write_synthderm,
)
from conceptlens.synthderm._protocol import apply_protocol

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


def test_config_hash_of_presets_without_protocol_is_unchanged() -> None:
    """Folders written before the protocol existed still accept a rerun (synthderm.json)."""
    from conceptlens.synthderm._generator import _config_hash

    recorded = {  # from the code of commit a4b406c
        "confounded": "5ff3347d909b651a",
        "iid": "11d5f67b4f1b8f1a",
        "skin-tone-shift": "e8dbcbb3254e995d",
    }
    for name, digest in recorded.items():
        assert _config_hash(SynthDermConfig.from_preset(name)) == digest


def _with_protocol(protocol: dict, base: str = "iid") -> SynthDermConfig:
    return SynthDermConfig.from_preset(base).replace(name="proto", protocol=protocol)


# -- configuration ---------------------------------------------------------------------
def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "proto.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("protocol", "match"),
    [
        ({"site_z": {"scale": 1.1}}, r"protocol: unknown site 'site_z'; sites are \['site_a'"),
        ({"site_c": {"zoom": 1.1}}, r"protocol\['site_c'\]: unknown field\(s\) \['zoom'\]"),
        ({"site_c": {"gain": [1.1, 1.0]}}, r"protocol\['site_c'\]\['gain'\].*list of 3"),
        (
            {"site_c": {"gain": [1.1, 1.0, "x"]}},
            r"protocol\['site_c'\]\['gain'\].*red, green, blue",
        ),
        ({"site_c": {"offset": [0, 0, 300]}}, r"protocol\['site_c'\]\['offset'\].*\[-128, 128\]"),
        ({"site_c": {"scale": 5}}, r"protocol\['site_c'\]\['scale'\] = 5.*\[0.5, 2\]"),
        ({"site_c": {"blur_sigma": -1}}, r"protocol\['site_c'\]\['blur_sigma'\] = -1.*\[0, 8\]"),
        (
            {"site_c": {"unsharp": True}},
            r"protocol\['site_c'\]\['unsharp'\] = True; give a number",
        ),
        ({"site_c": {"scale": float("nan")}}, r"protocol\['site_c'\]\['scale'\] = nan"),
        ({"site_c": 1.2}, r"protocol\['site_c'\] = 1.2; give a mapping of fields"),
        ([1, 2], r"protocol must map site names"),
    ],
)
def test_bad_protocol_names_the_file_site_and_field(tmp_path: Path, protocol, match) -> None:
    data = SynthDermConfig.from_preset("iid").to_dict()
    data["protocol"] = protocol
    with pytest.raises(ConfigError, match=r"proto\.yaml: SynthDermConfig\." + match):
        SynthDermConfig.from_yaml(_write(tmp_path, data))


def test_protocol_round_trips_and_is_left_out_when_empty(tmp_path: Path) -> None:
    cfg = _with_protocol({"site_c": {"gain": [1.2, 1, 0.8], "blur_sigma": 1, "scale": 1.25}})
    assert cfg.protocol["site_c"]["gain"] == (1.2, 1.0, 0.8)
    again = SynthDermConfig.from_yaml(cfg.to_yaml(tmp_path / "p.yaml"))
    assert again == cfg and again.to_dict() == cfg.to_dict()
    assert again.to_dict()["protocol"] == {
        "site_c": {"gain": [1.2, 1.0, 0.8], "blur_sigma": 1.0, "scale": 1.25}
    }
    # a configuration without a protocol writes what it wrote before (no new key)
    assert "protocol" not in SynthDermConfig.from_preset("confounded").to_dict()
    assert "protocol" not in yaml.safe_load(SynthDermConfig.from_preset("iid").to_yaml())


# -- the transform against dense references ---------------------------------------------
def test_colour_cast_is_the_dense_formula_on_its_site_only() -> None:
    gain, offset = [1.15, 0.9, 0.7], [-6.0, 4.5, 20.0]
    plain = SynthDerm("iid").generate(80, seed=2)
    cast = SynthDerm(_with_protocol({"site_b": {"gain": gain, "offset": offset}})).generate(
        80, seed=2
    )
    at_b = plain.site == "site_b"
    assert 0 < at_b.sum() < len(plain)
    ref = np.clip(np.rint(plain.images.astype(np.float64) * gain + offset), 0, 255)
    np.testing.assert_array_equal(cast.images[at_b], ref[at_b].astype(np.uint8))
    np.testing.assert_array_equal(cast.images[~at_b], plain.images[~at_b])
    # no randomness drawn, nothing else changed
    np.testing.assert_array_equal(cast.lesion_mask, plain.lesion_mask)
    np.testing.assert_array_equal(cast.concepts, plain.concepts)
    assert cast.captions == plain.captions and list(cast.site) == list(plain.site)
    assert cast.protocol == {"site_b": {"gain": gain, "offset": offset}}


def _images(seed: int = 0) -> np.ndarray:
    return SynthDerm("iid").generate(6, seed=seed).images


@pytest.mark.parametrize("size", [96, 64])
def test_blur_is_scipys_gaussian_filter(size: int) -> None:
    from scipy.ndimage import gaussian_filter

    img = SynthDerm("iid", image_size=size).generate(4, seed=1).images
    out, _ = apply_protocol(img, {}, {"blur_sigma": 1.5})
    sigma = 1.5 * size / 96
    ref = gaussian_filter(img.astype(np.float64), (0, sigma, sigma, 0), mode="nearest")
    ref = np.clip(np.rint(ref), 0, 255)
    assert np.abs(out.astype(int) - ref).max() <= 1  # float32 vs float64 rounding only
    assert np.mean(out != ref) < 0.01
    assert out.std() < img.std()  # it did blur


def test_unsharp_mask_is_the_dense_formula() -> None:
    from scipy.ndimage import gaussian_filter

    img = _images()
    out, _ = apply_protocol(img, {}, {"unsharp": 0.8})
    x = img.astype(np.float64)
    ref = x + 0.8 * (x - gaussian_filter(x, (0, 1, 1, 0), mode="nearest"))
    ref = np.clip(np.rint(ref), 0, 255)
    assert np.abs(out.astype(int) - ref).max() <= 1 and np.mean(out != ref) < 0.01


@pytest.mark.parametrize("scale", [1.37, 0.8])  # no exact nearest-neighbour ties
def test_zoom_moves_masks_with_pixels(scale: float) -> None:
    from PIL import Image
    from scipy.ndimage import map_coordinates

    batch = SynthDerm("confounded").generate(12, seed=4)
    masks = {"lesion": batch.lesion_mask, **batch.artifact_masks}
    out, moved = apply_protocol(batch.images, masks, {"scale": scale})
    n, h, w, _ = batch.images.shape
    # masks: PIL's nearest-neighbour affine map about the centre (pixel centres at +0.5)
    a = 1 / scale
    data = (a, 0, w / 2 * (1 - a), 0, a, h / 2 * (1 - a))
    inside = slice(None)
    if scale < 1:  # PIL fills outside the source with 0; we repeat the border: compare inside
        m = int(np.ceil((h / 2) * (1 - scale))) + 1
        inside = slice(m, h - m)
    for name, mask in masks.items():
        for i in range(n):
            ref = Image.fromarray(mask[i].astype(np.uint8) * 255).transform(
                (w, h), Image.Transform.AFFINE, data, resample=Image.Resampling.NEAREST
            )
            ref = np.asarray(ref) > 0
            np.testing.assert_array_equal(moved[name][i][inside, inside], ref[inside, inside])
    # lesion area scales with the square of the zoom (zoom-in: nothing leaves the frame)
    if scale > 1:
        ratio = moved["lesion"].sum((1, 2)) / batch.lesion_mask.sum((1, 2))
        np.testing.assert_allclose(ratio, scale**2, rtol=0.12)
    # images: bilinear resampling on the same grid (scipy, edges repeated)
    c = (h - 1) / 2
    src = np.clip(c + (np.arange(h) - c) / scale, 0, h - 1)
    yy, xx = np.meshgrid(src, src, indexing="ij")
    ref = np.stack(
        [
            [
                map_coordinates(batch.images[i, :, :, k].astype(float), [yy, xx], order=1)
                for k in range(3)
            ]
            for i in range(n)
        ]
    ).transpose(0, 2, 3, 1)
    assert np.abs(out.astype(int) - np.clip(np.rint(ref), 0, 255)).max() <= 1


def test_identity_protocol_changes_nothing() -> None:
    img = _images(3)
    out, _ = apply_protocol(img, {}, {"gain": [1, 1, 1], "scale": 1.0, "blur_sigma": 0})
    np.testing.assert_array_equal(out, img)


def test_protocol_is_deterministic_and_prefix_stable() -> None:
    cfg = _with_protocol({"site_a": {"blur_sigma": 1.0, "scale": 1.2, "gain": [1, 1, 1.2]}})
    a = SynthDerm(cfg).generate(100, seed=7)
    b = SynthDerm(cfg).generate(100, seed=7)
    c = SynthDerm(cfg).generate(40, seed=7)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.images[:40], c.images)
    np.testing.assert_array_equal(a.artifact_masks["ruler"][:40], c.artifact_masks["ruler"])


def test_written_data_records_the_protocol(tmp_path: Path) -> None:
    cfg = _with_protocol({"site_c": {"scale": 1.1}})
    write_synthderm(tmp_path / "out", 4, seed=0, preset=cfg)
    info = json.loads((tmp_path / "out" / "synthderm.json").read_text())
    assert info["protocol"] == {"site_c": {"scale": 1.1}}
    write_synthderm(tmp_path / "plain", 4, seed=0, preset="iid")
    assert "protocol" not in json.loads((tmp_path / "plain" / "synthderm.json").read_text())


# -- the shipped protocol-shift preset ----------------------------------------------------
def test_protocol_shift_preset_has_no_label_linked_artifact_and_a_device_shift() -> None:
    cfg = SynthDermConfig.from_preset("protocol-shift")
    assert cfg.heldout_site == "site_c" and set(cfg.protocol) == {"site_c"}
    for site in cfg.sites:  # artifacts and skin tone independent of the class, everywhere
        arts = [dict(cfg.artifact_probs[site][k]) for k in SYNTHDERM_CLASSES]
        tones = [cfg.skin_tone_probs[site][k] for k in SYNTHDERM_CLASSES]
        assert all(a == arts[0] for a in arts) and all(t == tones[0] for t in tones)
    batch = SynthDerm(cfg).generate(200, seed=0)
    plain = SynthDerm(cfg.replace(protocol={})).generate(200, seed=0)
    at_c = batch.site == "site_c"
    assert 0 < at_c.sum() < 200
    np.testing.assert_array_equal(batch.images[~at_c], plain.images[~at_c])
    np.testing.assert_array_equal(batch.concepts, plain.concepts)
    # the cast: bluer and less red at site_c; the zoom: larger lesions there
    diff = batch.images[at_c].astype(float).mean((0, 1, 2)) - plain.images[at_c].mean((0, 1, 2))
    assert diff[2] > 3 and diff[0] < -3
    area = batch.lesion_mask[at_c].sum() / plain.lesion_mask[at_c].sum()
    assert 1.1 < area < 1.3  # 1.1 ** 2 = 1.21


def test_structure_masks_follow_the_protocol_like_the_artifact_masks() -> None:
    """At a site with a zoom, every mask (lesion, artifacts, structures) moves with the pixels."""
    proto = {"site_a": {"scale": 1.25}}
    cfg = _with_protocol(proto)
    zoomed = SynthDerm(cfg).generate(24, seed=3)
    plain = SynthDerm(_with_protocol({})).generate(24, seed=3)
    at = np.asarray(zoomed.site) == "site_a"
    assert 0 < at.sum() < len(at)
    drawn = {
        "lesion": plain.lesion_mask[at],
        **{k: m[at] for k, m in plain.structure_masks.items()},
    }
    _, moved = apply_protocol(plain.images[at], drawn, proto["site_a"])
    assert any(m.any() for m in plain.structure_masks.values())
    for name, mask in zoomed.structure_masks.items():
        np.testing.assert_array_equal(mask[at], moved[name])
        np.testing.assert_array_equal(mask[~at], plain.structure_masks[name][~at])
    np.testing.assert_array_equal(zoomed.lesion_mask[at], moved["lesion"])
