"""SynthDerm: a procedural dermoscopy-like benchmark with known ground truth.

The generator draws, for each image, a site, a class, a skin tone and then every concept
independently from its (site, class)-conditional probability (see
:class:`~conceptlens.synthderm.SynthDermConfig`), and finally renders the image from the
concept vector with vectorised numpy drawing (``_draw``). Images are produced in
blocks of ``BLOCK`` images; block ``b`` takes its randomness from
``np.random.SeedSequence(seed, spawn_key=(b,))`` (three child streams: latents, captions,
drawing), so the same seed gives the same bytes, ``generate(n)`` is a prefix of
``generate(m)`` for ``m > n``, and captions never change the pixels. A site's imaging
protocol (``SynthDermConfig.protocol``) is a deterministic transform applied to its drawn
images and masks afterwards; it draws no random numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conceptlens._io import user_path
from conceptlens.exceptions import ConfigError, DataError
from conceptlens.synthderm._draw import draw_block
from conceptlens.synthderm._presets import (
    SynthDermConfig,
    _thaw,
    get_synthderm_preset,
)
from conceptlens.synthderm._protocol import apply_protocol
from conceptlens.synthderm._vocab import (
    CAPTION_TEMPLATES,
    CAPTION_TEMPLATES_EMPTY,
    CLASS_PHRASES,
    CONCEPT_PHRASES,
    NEUTRAL_LESION_WORDS,
    SYNTHDERM_ARTIFACTS,
    SYNTHDERM_CLASSES,
    SYNTHDERM_CONCEPTS,
    SYNTHDERM_STRUCTURES,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BLOCK",
    "SynthDerm",
    "SynthDermBatch",
    "generate_synthderm",
    "synthderm_bayes_accuracy",
    "write_synthderm",
]

BLOCK = 64
_CONCEPT_NAMES = tuple(n for n, _ in SYNTHDERM_CONCEPTS)
_CONCEPT_GROUPS = tuple(g for _, g in SYNTHDERM_CONCEPTS)


def _resolve(preset: str | os.PathLike[str] | SynthDermConfig) -> SynthDermConfig:
    if isinstance(preset, SynthDermConfig):
        return preset
    if isinstance(preset, str | os.PathLike):
        return get_synthderm_preset(preset)
    raise ConfigError(
        "preset must be a preset name, the path of a YAML configuration or a "
        f"SynthDermConfig, got {type(preset).__name__}."
    )


def _block_rngs(seed: int, block: int) -> list[np.random.Generator]:
    """Independent generators for the latents, the captions and the drawing of a block."""
    children = np.random.SeedSequence(seed, spawn_key=(block,)).spawn(3)
    return [np.random.default_rng(c) for c in children]


def _prob_tables(cfg: SynthDermConfig) -> tuple[np.ndarray, np.ndarray]:
    """(n_sites, n_classes, C) concept probabilities and (n_sites, n_classes, 6) tone probs."""
    site_tables = [cfg.concept_prob_table(s) for s in cfg.sites]
    probs = np.array(
        [[[t[c][k] for c in _CONCEPT_NAMES] for k in SYNTHDERM_CLASSES] for t in site_tables]
    )
    tones = np.array([[cfg.skin_tone_probs[s][k] for k in SYNTHDERM_CLASSES] for s in cfg.sites])
    return probs, tones


def _sample_latents(
    cfg: SynthDermConfig, rng: np.random.Generator, n: int, tables: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw site index, class index, skin tone and concepts for ``n`` images."""
    probs, tones = tables
    site_p = np.array([cfg.site_weights[s] for s in cfg.sites])
    class_p = np.array([cfg.class_priors[c] for c in SYNTHDERM_CLASSES])
    site = rng.choice(len(cfg.sites), size=n, p=site_p / site_p.sum())
    label = rng.choice(len(SYNTHDERM_CLASSES), size=n, p=class_p / class_p.sum())
    cdf = np.cumsum(tones[site, label], axis=1)
    tone = 1 + np.minimum((rng.random((n, 1)) > cdf).sum(axis=1), 5)
    concepts = (rng.random((n, len(_CONCEPT_NAMES))) < probs[site, label]).astype(np.uint8)
    return site, label.astype(np.int64), tone.astype(np.int64), concepts


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _caption(rng: np.random.Generator, cfg: SynthDermConfig, label: int, row: np.ndarray) -> str:
    if rng.random() < cfg.class_mention_rate:
        phrases = CLASS_PHRASES[SYNTHDERM_CLASSES[label]]
    else:
        phrases = list(NEUTRAL_LESION_WORDS)
    lesion = phrases[rng.integers(len(phrases))]
    present = [_CONCEPT_NAMES[j] for j in rng.permutation(np.flatnonzero(row))]
    if not present:
        template = CAPTION_TEMPLATES_EMPTY[rng.integers(len(CAPTION_TEMPLATES_EMPTY))]
        text = template.format(lesion=lesion)
    else:
        findings = [CONCEPT_PHRASES[c][rng.integers(len(CONCEPT_PHRASES[c]))] for c in present]
        template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
        text = template.format(lesion=lesion, findings=_join(findings))
    return text[0].upper() + text[1:]


@dataclasses.dataclass
class SynthDermBatch:
    """A generated SynthDerm sample with its full ground truth.

    Attributes
    ----------
    images : ndarray of uint8, shape (n, H, W, 3)
    labels : ndarray of int64, shape (n,)
        Index into ``class_names``.
    class_names : tuple of str
    concepts : ndarray of uint8, shape (n, C)
        Ground-truth 0/1 concept matrix, columns as ``concept_names``.
    concept_names, concept_groups : tuple of str, length C
    site : ndarray of str, shape (n,)
    skin_tone : ndarray of int64, shape (n,)
        Fitzpatrick-like group 1..6.
    lesion_mask : ndarray of bool, shape (n, H, W)
    artifact_masks : dict str -> ndarray of bool, shape (n, H, W)
        One mask per artifact (all False in images without that artifact).
    captions : list of str
    ids : list of str
    preset : str
        Name of the configuration that generated the batch.
    protocol : dict site -> dict
        The imaging protocol applied per site (empty when the images are as drawn).
    structure_masks : dict str -> ndarray of bool, shape (n, H, W)
        One mask per lesion structure or colour region (``SYNTHDERM_STRUCTURES``: veil,
        regression, streaks, dots/globules, ...): where it was drawn (opacity > 0.45),
        all False in images without it. The morphology concepts (asymmetry, irregular
        border, large diameter) have none: the lesion mask is their region.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    concepts: np.ndarray
    concept_names: tuple[str, ...]
    concept_groups: tuple[str, ...]
    site: np.ndarray
    skin_tone: np.ndarray
    lesion_mask: np.ndarray
    artifact_masks: dict[str, np.ndarray]
    captions: list[str]
    ids: list[str]
    preset: str = "custom"
    protocol: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    structure_masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def concept(self, name: str) -> np.ndarray:
        """The 0/1 column of concept ``name``, shape (n,)."""
        if name not in self.concept_names:
            raise ConfigError(
                f"unknown SynthDerm concept {name!r}; concepts are {list(self.concept_names)}."
            )
        return self.concepts[:, self.concept_names.index(name)]

    def metadata(self) -> pd.DataFrame:
        """Per-sample table (index = ids): label (class name), site, skin_tone, caption,
        one 0/1 column per concept."""
        import pandas as pd

        df = pd.DataFrame(
            {
                "label": [self.class_names[i] for i in self.labels],
                "site": self.site.astype(str),
                "skin_tone": self.skin_tone.astype(np.int64),
                "caption": self.captions,
            },
            index=pd.Index(self.ids, name="id"),
        )
        for j, name in enumerate(self.concept_names):
            df[name] = self.concepts[:, j].astype(np.int64)
        return df

    def to_dataset(self) -> Any:
        """Wrap the batch as a :class:`conceptlens.data.ImageDataset`.

        The label column is ``label`` (classes in ``class_names`` order); metadata columns
        are ``site``, ``skin_tone``, ``caption`` and one 0/1 column per concept; masks are
        ``lesion_mask``, ``<artifact>_mask`` and ``<structure>_mask`` (the names
        :func:`load_manifest` gives the mask columns of a written manifest).

        Examples
        --------
        >>> ds = SynthDerm("iid").generate(4, seed=0).to_dataset()
        >>> len(ds), ds.classes
        (4, ['nevus', 'melanoma', 'seborrheic_keratosis'])
        """
        from conceptlens.data import ImageDataset

        masks = {"lesion_mask": self.lesion_mask}
        masks.update({f"{a}_mask": m for a, m in self.artifact_masks.items()})
        masks.update({f"{c}_mask": m for c, m in self.structure_masks.items()})
        return ImageDataset.from_arrays(
            self.images,
            self.metadata().reset_index(drop=True),
            label_column="label",
            classes=list(self.class_names),
            ids=list(self.ids),
            masks=masks,
        )


class SynthDerm:
    """Procedural dermoscopy-like image generator with ground-truth concepts.

    Parameters
    ----------
    preset : str, path or SynthDermConfig, default "iid"
        A preset name (see :func:`list_synthderm_presets`), the path of a YAML
        configuration (:meth:`SynthDermConfig.to_yaml`) or a full configuration.
    image_size : int, default 96
        Side of the square images in pixels (32..1024); drawing scales with it.

    Examples
    --------
    >>> gen = SynthDerm("confounded")
    >>> batch = gen.generate(8, seed=1)
    >>> batch.images.shape, batch.concepts.shape
    ((8, 96, 96, 3), (8, 17))
    """

    def __init__(
        self, preset: str | os.PathLike[str] | SynthDermConfig = "iid", *, image_size: int = 96
    ) -> None:
        self.config = _resolve(preset)
        if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer):
            raise ConfigError(f"image_size must be an integer, got {image_size!r}.")
        if not 32 <= int(image_size) <= 1024:
            raise ConfigError(f"image_size={image_size} is out of range; use 32..1024 pixels.")
        self.image_size = int(image_size)
        self._tables = _prob_tables(self.config)

    def __repr__(self) -> str:
        return f"SynthDerm(preset={self.config.name!r}, image_size={self.image_size})"

    @property
    def concept_names(self) -> tuple[str, ...]:
        return _CONCEPT_NAMES

    def _block(self, seed: int, block: int, count: int) -> SynthDermBatch:
        # A block is always drawn whole and then cut to `count`, so that its content does
        # not depend on how many images were asked for (prefix stability).
        rng_latent, rng_caption, rng_draw = _block_rngs(seed, block)
        site, label, tone, concepts = _sample_latents(self.config, rng_latent, BLOCK, self._tables)
        captions = [
            _caption(rng_caption, self.config, int(label[i]), concepts[i]) for i in range(count)
        ]
        images, lesion, masks, structures = draw_block(rng_draw, concepts, tone, self.image_size)
        if self.config.protocol:
            # structure masks follow the zoom exactly as the artifact masks do
            images, lesion, both = self._photograph(site, images, lesion, {**masks, **structures})
            masks = {a: both[a] for a in masks}
            structures = {k: both[k] for k in structures}
        start = block * BLOCK
        cut = slice(0, count)
        return SynthDermBatch(
            images=images[cut],
            labels=label[cut],
            class_names=SYNTHDERM_CLASSES,
            concepts=concepts[cut],
            concept_names=_CONCEPT_NAMES,
            concept_groups=_CONCEPT_GROUPS,
            site=np.array([self.config.sites[s] for s in site[cut]], dtype=object),
            skin_tone=tone[cut],
            lesion_mask=lesion[cut],
            artifact_masks={a: m[cut] for a, m in masks.items()},
            captions=captions,
            ids=[f"synthderm-{seed}-{start + i:07d}" for i in range(count)],
            preset=self.config.name,
            protocol=_thaw(self.config.protocol),
            structure_masks={s: m[cut] for s, m in structures.items()},
        )

    def _photograph(
        self,
        site: np.ndarray,
        images: np.ndarray,
        lesion: np.ndarray,
        masks: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Apply each site's imaging protocol to its images and masks (no randomness)."""
        images = images.copy()
        lesion = lesion.copy()
        masks = {a: m.copy() for a, m in masks.items()}
        for s, fields in self.config.protocol.items():
            rows = np.flatnonzero(site == self.config.sites.index(s))
            if rows.size == 0:
                continue
            sub = {"lesion": lesion[rows], **{a: m[rows] for a, m in masks.items()}}
            out, sub = apply_protocol(images[rows], sub, fields, image_size=self.image_size)
            images[rows] = out
            lesion[rows] = sub.pop("lesion")
            for a, m in sub.items():
                masks[a][rows] = m
        return images, lesion, masks

    def iter_blocks(self, n: int, seed: int = 0) -> Any:
        """Yield the ``n`` samples as consecutive :class:`SynthDermBatch` blocks of
        at most ``BLOCK`` images (memory stays bounded for large ``n``)."""
        n, seed = _check_n_seed(n, seed)
        for b in range((n + BLOCK - 1) // BLOCK):
            yield self._block(seed, b, min(BLOCK, n - b * BLOCK))

    def generate(self, n: int, seed: int = 0) -> SynthDermBatch:
        """Generate ``n`` images with their ground truth.

        Parameters
        ----------
        n : int
            Number of images (>= 1).
        seed : int, default 0
            Same seed, same bytes.

        Returns
        -------
        SynthDermBatch

        Examples
        --------
        >>> b = SynthDerm().generate(3, seed=0)
        >>> b.labels.dtype, len(b.captions)
        (dtype('int64'), 3)
        """
        return _concat(list(self.iter_blocks(n, seed)))


def _check_n_seed(n: Any, seed: Any) -> tuple[int, int]:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    return int(n), int(seed)


def _concat(blocks: Sequence[SynthDermBatch]) -> SynthDermBatch:
    if len(blocks) == 1:
        return blocks[0]
    first = blocks[0]
    return SynthDermBatch(
        images=np.concatenate([b.images for b in blocks]),
        labels=np.concatenate([b.labels for b in blocks]),
        class_names=first.class_names,
        concepts=np.concatenate([b.concepts for b in blocks]),
        concept_names=first.concept_names,
        concept_groups=first.concept_groups,
        site=np.concatenate([b.site for b in blocks]),
        skin_tone=np.concatenate([b.skin_tone for b in blocks]),
        lesion_mask=np.concatenate([b.lesion_mask for b in blocks]),
        artifact_masks={
            a: np.concatenate([b.artifact_masks[a] for b in blocks]) for a in SYNTHDERM_ARTIFACTS
        },
        captions=[c for b in blocks for c in b.captions],
        ids=[i for b in blocks for i in b.ids],
        preset=first.preset,
        protocol=first.protocol,
        structure_masks={
            s: np.concatenate([b.structure_masks[s] for b in blocks]) for s in SYNTHDERM_STRUCTURES
        },
    )


def generate_synthderm(
    n: int,
    *,
    seed: int = 0,
    preset: str | os.PathLike[str] | SynthDermConfig = "iid",
    image_size: int = 96,
) -> SynthDermBatch:
    """Shortcut for ``SynthDerm(preset, image_size=image_size).generate(n, seed)``.

    Examples
    --------
    >>> generate_synthderm(2, seed=3, preset="iid").images.dtype
    dtype('uint8')
    """
    return SynthDerm(preset, image_size=image_size).generate(n, seed)


def synthderm_bayes_accuracy(
    preset: str | os.PathLike[str] | SynthDermConfig = "iid",
    *,
    n: int = 200_000,
    seed: int = 0,
    site: str | None = None,
) -> float:
    """Monte Carlo estimate of the Bayes-optimal class accuracy from the 17 concepts.

    Concepts are conditionally independent given (site, class), so the exact posterior is
    ``P(y | c) ∝ Σ_s P(s) P(y) Π_j P(c_j | y, s)`` (naive Bayes mixed over sites); the
    estimate applies its argmax to ``n`` sampled concept vectors (no images are drawn).

    Parameters
    ----------
    preset : str or SynthDermConfig
    n : int
        Monte Carlo sample size (standard error about ``sqrt(a (1 - a) / n)``).
    seed : int
    site : str, optional
        Restrict to one site (the posterior then uses that site's table only).

    Examples
    --------
    >>> round(synthderm_bayes_accuracy("iid", n=20_000), 2)
    0.89
    """
    cfg = _resolve(preset)
    n, seed = _check_n_seed(n, seed)
    if site is not None:
        if site not in cfg.sites:
            raise ConfigError(f"unknown site {site!r}; sites are {list(cfg.sites)}.")
        cfg = cfg.replace(
            sites=(site,),
            site_weights={site: 1.0},
            artifact_probs={site: _thaw(cfg.artifact_probs[site])},
            skin_tone_probs={site: _thaw(cfg.skin_tone_probs[site])},
            heldout_site=None,
            protocol={k: v for k, v in _thaw(cfg.protocol).items() if k == site},
        )
    tables = _prob_tables(cfg)
    _, label, _, concepts = _sample_latents(cfg, np.random.default_rng(seed), n, tables)
    probs = np.clip(tables[0], 1e-12, 1 - 1e-12)  # (S, K, C)
    n_s, n_k, n_c = probs.shape
    c = concepts.astype(np.float64)
    loglik = c @ np.log(probs).reshape(-1, n_c).T + (1 - c) @ np.log1p(-probs).reshape(-1, n_c).T
    log_site = np.log([cfg.site_weights[s] for s in cfg.sites])
    log_prior = np.log([cfg.class_priors[k] for k in SYNTHDERM_CLASSES])
    joint = loglik.reshape(n, n_s, n_k) + log_site[None, :, None] + log_prior[None, None, :]
    post = np.logaddexp.reduce(joint, axis=1)  # (n, K)
    return float(np.mean(post.argmax(axis=1) == label))


# -- writing to disk -----------------------------------------------------------------
def _config_hash(cfg: SynthDermConfig) -> str:
    payload = cfg.to_dict()  # leaves out an empty protocol: older hashes stay valid
    text = json.dumps(payload, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    from conceptlens._io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def write_synthderm(
    out_dir: str | os.PathLike[str],
    n: int,
    *,
    seed: int = 0,
    preset: str | os.PathLike[str] | SynthDermConfig = "iid",
    image_size: int = 96,
    overwrite: bool = False,
) -> Path:
    """Write ``n`` SynthDerm images, masks and ``manifest.csv`` under ``out_dir``.

    Layout: ``images/<id>.png``, ``masks/<id>_lesion.png``, ``masks/<id>_<artifact>.png``
    and ``masks/<id>_<structure>.png`` (only for artifacts and colour/structure concepts
    present; 8-bit, 255 = inside), ``manifest.csv`` and
    ``synthderm.json`` (the settings, with the imaging protocol when the configuration has
    one). Manifest columns: ``id, path, label, site,
    skin_tone, caption, lesion_mask, <artifact>_mask, <structure>_mask`` (empty when
    absent) and one 0/1
    column per concept; paths are relative to ``out_dir``, as
    :func:`conceptlens.data.load_manifest` expects.

    Every file is written atomically and the manifest last, so an interrupted run leaves
    no half-written file; rerunning with the same settings skips the images already
    written and completes the rest (same seed, same bytes). Rerunning with different
    settings into the same folder raises :class:`ConfigError` unless ``overwrite=True``.

    Returns
    -------
    pathlib.Path
        Path of ``manifest.csv``.

    Examples
    --------
    >>> import tempfile
    >>> path = write_synthderm(tempfile.mkdtemp(), 4, seed=0)
    >>> path.name
    'manifest.csv'
    """
    import pandas as pd

    from conceptlens._io import atomic_path, atomic_write_text
    from conceptlens._progress import progress

    gen = SynthDerm(preset, image_size=image_size)
    n, seed = _check_n_seed(n, seed)
    out = user_path(out_dir)
    settings = {
        "generator": "conceptlens.synthderm",
        "format": 1,
        "n": n,
        "seed": seed,
        "preset": gen.config.name,
        "config_sha256_16": _config_hash(gen.config),
        "image_size": gen.image_size,
    }
    if gen.config.protocol:
        settings["protocol"] = _thaw(gen.config.protocol)
    info = out / "synthderm.json"
    if not overwrite and not info.exists() and (out / "manifest.csv").exists():
        raise ConfigError(
            f"{out} holds a manifest.csv that SynthDerm did not write (no synthderm.json); "
            "writing there would replace it. Choose another folder or pass overwrite=True "
            "(--overwrite)."
        )
    if info.exists() and not overwrite:
        try:
            old = json.loads(info.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(
                f"{info} is unreadable ({exc}); delete it or pass overwrite=True."
            ) from exc
        if old != settings:
            raise ConfigError(
                f"{out} already holds SynthDerm data written with {old}, not {settings}; "
                "choose another folder or pass overwrite=True (--overwrite)."
            )
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        # temporary files of an interrupted writer (see conceptlens._io.atomic_path)
        for stray in (out / sub).glob(".*.png.*.tmp"):
            stray.unlink()
    atomic_write_text(info, json.dumps(settings, indent=2, sort_keys=True) + "\n")

    frames = []
    blocks = gen.iter_blocks(n, seed)
    for batch in progress(blocks, total=(n + BLOCK - 1) // BLOCK, desc="synthderm"):
        meta = batch.metadata()
        cols: dict[str, list[str]] = {"path": [], "lesion_mask": []}
        for a in (*SYNTHDERM_ARTIFACTS, *SYNTHDERM_STRUCTURES):
            cols[f"{a}_mask"] = []
        for i, sid in enumerate(batch.ids):
            rel = f"images/{sid}.png"
            cols["path"].append(rel)
            if overwrite or not (out / rel).exists():
                _save_png(out / rel, batch.images[i])
            items = (
                [("lesion", batch.lesion_mask[i], True)]
                + [
                    (a, batch.artifact_masks[a][i], bool(batch.concept(a)[i]))
                    for a in SYNTHDERM_ARTIFACTS
                ]
                + [
                    (c, batch.structure_masks[c][i], bool(batch.concept(c)[i]))
                    for c in SYNTHDERM_STRUCTURES
                ]
            )
            for name, mask, present in items:
                mrel = f"masks/{sid}_{name}.png" if present else ""
                cols[f"{name}_mask"].append(mrel)
                if present and (overwrite or not (out / mrel).exists()):
                    _save_png(out / mrel, mask.astype(np.uint8) * 255)
        meta.insert(0, "path", cols["path"])
        for key, value in cols.items():
            if key != "path":
                meta[key] = value
        frames.append(meta)
    table = pd.concat(frames).reset_index()
    concept_cols = list(_CONCEPT_NAMES)
    mask_cols = [
        "lesion_mask",
        *[f"{a}_mask" for a in (*SYNTHDERM_ARTIFACTS, *SYNTHDERM_STRUCTURES)],
    ]
    order = ["id", "path", "label", "site", "skin_tone", "caption", *mask_cols, *concept_cols]
    table = table[order]
    manifest = out / "manifest.csv"
    with atomic_path(manifest) as tmp:
        table.to_csv(tmp, index=False)
    return manifest
