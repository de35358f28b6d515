"""SynthDerm configuration: class priors, concept and artifact probabilities, presets.

A :class:`SynthDermConfig` holds every probability the generator samples from:

* ``class_priors`` -- P(class), the same at every site;
* ``site_weights`` -- P(site);
* ``concept_probs`` -- P(concept | class) for the lesion concepts (morphology, colour and
  structure groups); the same at every site, so lesion morphology never shifts;
* ``artifact_probs`` -- P(artifact | site, class), the table that plants shortcuts;
* ``skin_tone_probs`` -- P(skin tone | site, class) over the six tones 1..6.

All concepts are drawn independently given (site, class).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from conceptlens.exceptions import ConfigError, UnknownNameError
from conceptlens.synthderm._vocab import (
    SYNTHDERM_ARTIFACTS,
    SYNTHDERM_CLASSES,
    SYNTHDERM_CONCEPTS,
)

__all__ = [
    "LESION_CONCEPTS",
    "SynthDermConfig",
    "get_synthderm_preset",
    "list_synthderm_presets",
]

LESION_CONCEPTS: tuple[str, ...] = tuple(n for n, g in SYNTHDERM_CONCEPTS if g != "artifact")
N_SKIN_TONES = 6

# P(concept | class) for (nevus, melanoma, seborrheic_keratosis).
_LESION_PROBS: dict[str, tuple[float, float, float]] = {
    "asymmetry": (0.15, 0.75, 0.35),
    "irregular_border": (0.15, 0.70, 0.30),
    "large_diameter": (0.20, 0.65, 0.45),
    "multiple_colors": (0.15, 0.70, 0.30),
    "blue_white_veil": (0.05, 0.50, 0.10),
    "regression_structures": (0.05, 0.40, 0.10),
    "atypical_pigment_network": (0.15, 0.60, 0.05),
    "irregular_dots_globules": (0.20, 0.55, 0.10),
    "irregular_streaks": (0.05, 0.45, 0.05),
    "milia_like_cysts": (0.10, 0.05, 0.70),
    "comedo_like_openings": (0.05, 0.05, 0.60),
    "dotted_vessels": (0.10, 0.30, 0.25),
}
_CLASS_PRIORS = {"nevus": 0.5, "melanoma": 0.3, "seborrheic_keratosis": 0.2}
# Class-independent artifact prevalence used by `iid` (and for the artifacts that
# `confounded` leaves alone).
_IID_ARTIFACTS = {
    "ruler": 0.3,
    "purple_ink": 0.25,
    "dark_corners": 0.3,
    "hair": 0.35,
    "gel_bubbles": 0.25,
}
_DEFAULT_TONES = (0.2, 0.25, 0.2, 0.15, 0.12, 0.08)


def _freeze(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in obj.items()})
    if isinstance(obj, list | tuple):
        return tuple(float(v) for v in obj)
    return float(obj)


def _thaw(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _thaw(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return list(obj)
    return obj


def _check_prob(value: Any, where: str) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ConfigError(f"{where} = {value!r} is not a probability; use a number in [0, 1].")


def _check_keys(got: Mapping[str, Any], expected: Sequence[str], where: str, what: str) -> None:
    unknown = sorted(set(got) - set(expected))
    if unknown:
        raise ConfigError(
            f"{where}: unknown {what} {unknown}; known {what}s are {list(expected)}."
        )
    missing = [k for k in expected if k not in got]
    if missing:
        raise ConfigError(f"{where}: missing {what} {missing}; give a value for each.")


def _check_distribution(values: Sequence[float], where: str) -> None:
    for i, v in enumerate(values):
        _check_prob(v, f"{where}[{i}]")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"{where} sums to {sum(values):.6g}; probabilities must sum to 1.")


@dataclasses.dataclass(frozen=True)
class SynthDermConfig:
    """Every probability the SynthDerm generator samples from.

    Parameters
    ----------
    name : str
        Label recorded with generated data.
    sites : tuple of str
        Site names, e.g. ``("site_a", "site_b", "site_c")``.
    site_weights : mapping site -> float
        P(site); must sum to 1.
    class_priors : mapping class -> float
        P(class) over ``SYNTHDERM_CLASSES``; must sum to 1.
    concept_probs : mapping concept -> (mapping class -> float)
        P(concept | class) for every non-artifact concept.
    artifact_probs : mapping site -> (mapping class -> (mapping artifact -> float))
        P(artifact | site, class): the shortcut table.
    skin_tone_probs : mapping site -> (mapping class -> sequence of 6 floats)
        P(skin tone | site, class) over tones 1..6.
    heldout_site : str or None
        The site meant for out-of-distribution evaluation (``confounded``: ``"site_c"``).
    class_mention_rate : float
        Probability that a caption names the class.

    Examples
    --------
    >>> cfg = SynthDermConfig.from_preset("iid").with_artifact_probs(purple_ink=0.5)
    >>> cfg.artifact_probs["site_a"]["melanoma"]["purple_ink"]
    0.5
    """

    name: str
    sites: tuple[str, ...]
    site_weights: Mapping[str, float]
    class_priors: Mapping[str, float]
    concept_probs: Mapping[str, Mapping[str, float]]
    artifact_probs: Mapping[str, Mapping[str, Mapping[str, float]]]
    skin_tone_probs: Mapping[str, Mapping[str, tuple[float, ...]]]
    heldout_site: str | None = None
    class_mention_rate: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", tuple(str(s) for s in self.sites))
        for field in (
            "site_weights",
            "class_priors",
            "concept_probs",
            "artifact_probs",
            "skin_tone_probs",
        ):
            value = getattr(self, field)
            if not isinstance(value, Mapping):
                raise ConfigError(f"SynthDermConfig.{field} must be a mapping, got {value!r}.")
            object.__setattr__(self, field, _freeze(value))
        self._validate()

    # -- validation ----------------------------------------------------------------
    def _validate(self) -> None:
        if not self.sites or len(set(self.sites)) != len(self.sites):
            raise ConfigError(f"SynthDermConfig.sites must be unique names, got {self.sites}.")
        _check_keys(self.site_weights, self.sites, "SynthDermConfig.site_weights", "site")
        _check_distribution(
            [self.site_weights[s] for s in self.sites], "SynthDermConfig.site_weights"
        )
        _check_keys(self.class_priors, SYNTHDERM_CLASSES, "SynthDermConfig.class_priors", "class")
        _check_distribution(
            [self.class_priors[c] for c in SYNTHDERM_CLASSES], "SynthDermConfig.class_priors"
        )
        _check_keys(
            self.concept_probs, LESION_CONCEPTS, "SynthDermConfig.concept_probs", "concept"
        )
        for concept, table in self.concept_probs.items():
            where = f"SynthDermConfig.concept_probs[{concept!r}]"
            _check_keys(table, SYNTHDERM_CLASSES, where, "class")
            for cls, p in table.items():
                _check_prob(p, f"{where}[{cls!r}]")
        _check_keys(self.artifact_probs, self.sites, "SynthDermConfig.artifact_probs", "site")
        for site, by_class in self.artifact_probs.items():
            where = f"SynthDermConfig.artifact_probs[{site!r}]"
            _check_keys(by_class, SYNTHDERM_CLASSES, where, "class")
            for cls, art_table in by_class.items():
                _check_keys(art_table, SYNTHDERM_ARTIFACTS, f"{where}[{cls!r}]", "artifact")
                for art, p in art_table.items():
                    _check_prob(p, f"{where}[{cls!r}][{art!r}]")
        _check_keys(self.skin_tone_probs, self.sites, "SynthDermConfig.skin_tone_probs", "site")
        for site, tones_by_class in self.skin_tone_probs.items():
            where = f"SynthDermConfig.skin_tone_probs[{site!r}]"
            _check_keys(tones_by_class, SYNTHDERM_CLASSES, where, "class")
            for cls, dist in tones_by_class.items():
                if not isinstance(dist, tuple) or len(dist) != N_SKIN_TONES:
                    raise ConfigError(
                        f"{where}[{cls!r}] = {dist!r}; give a list of {N_SKIN_TONES} "
                        f"probabilities, one per skin tone 1..{N_SKIN_TONES}."
                    )
                _check_distribution(dist, f"{where}[{cls!r}]")
        if self.heldout_site is not None and self.heldout_site not in self.sites:
            raise ConfigError(
                f"SynthDermConfig.heldout_site {self.heldout_site!r} is not one of the sites "
                f"{list(self.sites)}."
            )
        _check_prob(self.class_mention_rate, "SynthDermConfig.class_mention_rate")

    # -- constructors and helpers ----------------------------------------------------
    @classmethod
    def from_preset(cls, name: str) -> SynthDermConfig:
        """Return the configuration of a named preset (see :func:`list_synthderm_presets`)."""
        return get_synthderm_preset(name)

    def replace(self, **changes: Any) -> SynthDermConfig:
        """Return a validated copy with some fields replaced (like ``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def with_artifact_probs(
        self, *, site: str | None = None, cls: str | None = None, **probs: float
    ) -> SynthDermConfig:
        """Return a copy with P(artifact | site, class) set for the given artifacts.

        ``site``/``cls`` restrict the change to one site/class; ``None`` means all.
        """
        for art in probs:
            if art not in SYNTHDERM_ARTIFACTS:
                raise ConfigError(
                    f"unknown artifact {art!r}; artifacts are {list(SYNTHDERM_ARTIFACTS)}."
                )
        if site is not None and site not in self.sites:
            raise ConfigError(f"unknown site {site!r}; sites are {list(self.sites)}.")
        if cls is not None and cls not in SYNTHDERM_CLASSES:
            raise ConfigError(f"unknown class {cls!r}; classes are {list(SYNTHDERM_CLASSES)}.")
        table = _thaw(self.artifact_probs)
        for s in self.sites if site is None else [site]:
            for c in SYNTHDERM_CLASSES if cls is None else [cls]:
                table[s][c].update(probs)
        return self.replace(artifact_probs=table)

    def concept_prob_table(self, site: str) -> dict[str, dict[str, float]]:
        """P(concept | class) at ``site`` for every concept (artifacts included)."""
        if site not in self.sites:
            raise ConfigError(f"unknown site {site!r}; sites are {list(self.sites)}.")
        out: dict[str, dict[str, float]] = {}
        for name, group in SYNTHDERM_CONCEPTS:
            if group == "artifact":
                out[name] = {c: self.artifact_probs[site][c][name] for c in SYNTHDERM_CLASSES}
            else:
                out[name] = dict(self.concept_probs[name])
        return out

    def artifact_table(self) -> Any:
        """P(artifact | site, class) as a pandas DataFrame indexed by (site, class)."""
        import pandas as pd

        rows = {
            (s, c): dict(self.artifact_probs[s][c]) for s in self.sites for c in SYNTHDERM_CLASSES
        }
        df = pd.DataFrame.from_dict(rows, orient="index")[list(SYNTHDERM_ARTIFACTS)]
        df.index = pd.MultiIndex.from_tuples(df.index, names=["site", "class"])
        return df


# -- presets ---------------------------------------------------------------------------
def _lesion_probs() -> dict[str, dict[str, float]]:
    return {k: dict(zip(SYNTHDERM_CLASSES, v, strict=True)) for k, v in _LESION_PROBS.items()}


def _uniform_artifacts(sites: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    return {s: {c: dict(_IID_ARTIFACTS) for c in SYNTHDERM_CLASSES} for s in sites}


def _tones(sites: Sequence[str]) -> dict[str, dict[str, tuple[float, ...]]]:
    return {s: dict.fromkeys(SYNTHDERM_CLASSES, _DEFAULT_TONES) for s in sites}


def _iid() -> SynthDermConfig:
    sites = ("site_a", "site_b", "site_c")
    return SynthDermConfig(
        name="iid",
        sites=sites,
        site_weights=dict.fromkeys(sites, 1 / 3),
        class_priors=_CLASS_PRIORS,
        concept_probs=_lesion_probs(),
        artifact_probs=_uniform_artifacts(sites),
        skin_tone_probs=_tones(sites),
        heldout_site=None,
    )


def _confounded() -> SynthDermConfig:
    sites = ("site_a", "site_b", "site_c")
    art = _uniform_artifacts(sites)
    # Training sites: ink on most melanomas, rulers mostly on melanomas.
    for s in ("site_a", "site_b"):
        art[s]["nevus"].update(purple_ink=0.08, ruler=0.12)
        art[s]["melanoma"].update(purple_ink=0.85, ruler=0.70)
        art[s]["seborrheic_keratosis"].update(purple_ink=0.10, ruler=0.15)
    # Held-out site: the tie is reversed.
    art["site_c"]["nevus"].update(purple_ink=0.40, ruler=0.40)
    art["site_c"]["melanoma"].update(purple_ink=0.10, ruler=0.10)
    art["site_c"]["seborrheic_keratosis"].update(purple_ink=0.40, ruler=0.40)
    return SynthDermConfig(
        name="confounded",
        sites=sites,
        site_weights={"site_a": 0.4, "site_b": 0.4, "site_c": 0.2},
        class_priors=_CLASS_PRIORS,
        concept_probs=_lesion_probs(),
        artifact_probs=art,
        skin_tone_probs=_tones(sites),
        heldout_site="site_c",
    )


def _skin_tone_shift() -> SynthDermConfig:
    sites = ("site_a", "site_b", "site_c")
    light = (0.35, 0.35, 0.15, 0.07, 0.05, 0.03)
    dark = (0.03, 0.05, 0.07, 0.15, 0.35, 0.35)
    even = (1 / 6,) * 6
    tones = {
        # site_a: melanomas on light skin, nevi on dark skin.
        "site_a": {"nevus": dark, "melanoma": light, "seborrheic_keratosis": even},
        "site_b": {"nevus": dark, "melanoma": light, "seborrheic_keratosis": even},
        # site_c (held out): the link is reversed.
        "site_c": {"nevus": light, "melanoma": dark, "seborrheic_keratosis": even},
    }
    return SynthDermConfig(
        name="skin-tone-shift",
        sites=sites,
        site_weights={"site_a": 0.4, "site_b": 0.4, "site_c": 0.2},
        class_priors=_CLASS_PRIORS,
        concept_probs=_lesion_probs(),
        artifact_probs=_uniform_artifacts(sites),
        skin_tone_probs=tones,
        heldout_site="site_c",
    )


_PRESETS = {"iid": _iid, "confounded": _confounded, "skin-tone-shift": _skin_tone_shift}


def list_synthderm_presets() -> list[str]:
    """Names of the shipped SynthDerm presets.

    Examples
    --------
    >>> list_synthderm_presets()
    ['confounded', 'iid', 'skin-tone-shift']
    """
    return sorted(_PRESETS)


def get_synthderm_preset(name: str) -> SynthDermConfig:
    """Return the :class:`SynthDermConfig` of the preset ``name``.

    Raises
    ------
    UnknownNameError
        If no preset has that name; the message lists the presets.
    """
    if name not in _PRESETS:
        raise UnknownNameError(
            f"unknown SynthDerm preset {name!r}; available presets: {list_synthderm_presets()}. "
            "Pass a SynthDermConfig for a custom setup."
        )
    return _PRESETS[name]()
