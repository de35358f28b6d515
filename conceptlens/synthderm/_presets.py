"""SynthDerm configuration: class priors, concept and artifact probabilities, presets.

A :class:`SynthDermConfig` holds every probability the generator samples from:

* ``class_priors`` -- P(class), the same at every site;
* ``site_weights`` -- P(site);
* ``concept_probs`` -- P(concept | class) for the lesion concepts (morphology, colour and
  structure groups); the same at every site, so lesion morphology never shifts;
* ``artifact_probs`` -- P(artifact | site, class), the table that plants shortcuts;
* ``skin_tone_probs`` -- P(skin tone | site, class) over the six tones 1..6;
* ``protocol`` -- optional per-site imaging protocol (colour cast, sharpness, scale),
  a deterministic transform of the drawn images (see ``_protocol``).

All concepts are drawn independently given (site, class).

A configuration is data: :meth:`SynthDermConfig.from_yaml` reads one from a YAML file and
:meth:`SynthDermConfig.to_yaml` writes one, so a shortcut of one's own (any artifact, any
class, any site) is a file, not code. The shipped presets are such files, in
``conceptlens/synthderm/presets/<name>.yaml``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from conceptlens.exceptions import ConfigError, MissingFileError, UnknownNameError
from conceptlens.synthderm._protocol import check_protocol
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
    protocol : mapping site -> (mapping field -> value), optional
        Per-site imaging protocol applied to the drawn images of that site: ``gain`` and
        ``offset`` (colour cast, 3 numbers each), ``blur_sigma``, ``unsharp`` and
        ``scale`` (see docs/synthderm.md). Sites not listed are photographed as drawn.
        Written to YAML only when set.

    Examples
    --------
    >>> cfg = SynthDermConfig.from_preset("iid").with_artifact_probs(purple_ink=0.5)
    >>> cfg.artifact_probs["site_a"]["melanoma"]["purple_ink"]
    0.5

    Written to YAML and read back, a configuration is unchanged:

    >>> import tempfile
    >>> path = cfg.replace(name="half-ink").to_yaml(Path(tempfile.mkdtemp()) / "ink.yaml")
    >>> SynthDermConfig.from_yaml(path) == cfg.replace(name="half-ink")
    True
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
    protocol: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", tuple(str(s) for s in self.sites))
        if self.sites and len(set(self.sites)) == len(self.sites):
            object.__setattr__(self, "protocol", check_protocol(self.protocol, self.sites))
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

    # -- data ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (lists and dicts), what :meth:`from_dict` reads."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "protocol" and not value:
                continue  # optional; configurations without one read and hash as before
            out[f.name] = list(value) if f.name == "sites" else _thaw(value)
        return out

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<config>") -> SynthDermConfig:
        """Build a validated configuration from a plain dict (as :meth:`to_dict` writes).

        Raises
        ------
        ConfigError
            Naming ``source`` and the field: a missing or unknown field, a value that is
            not a probability, a distribution that does not sum to 1, an unknown site,
            class, concept or artifact.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{source}: a SynthDerm configuration is a mapping of fields, got "
                f"{type(data).__name__}; see conceptlens/synthderm/presets/iid.yaml."
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(map(str, data)) - set(fields))
        if unknown:
            raise ConfigError(
                f"{source}: unknown field(s) {unknown}; the fields are {list(fields)}."
            )
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in data]
        if missing:
            raise ConfigError(f"{source}: missing field(s) {missing}; give a value for each.")
        kwargs = dict(data)
        if not isinstance(kwargs["name"], str) or not kwargs["name"]:
            raise ConfigError(f"{source}: field 'name' must be a non-empty string.")
        if not isinstance(kwargs["sites"], list | tuple) or not all(
            isinstance(x, str) for x in kwargs["sites"]
        ):
            raise ConfigError(f"{source}: field 'sites' must be a list of site names.")
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}; see conceptlens/synthderm/presets/") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> SynthDermConfig:
        """Read a configuration from a YAML file (``yaml.safe_load``).

        Parameters
        ----------
        path : path
            A file as :meth:`to_yaml` writes it (the shipped presets are examples).

        Raises
        ------
        MissingFileError
            No such file.
        ConfigError
            Not YAML, or a field is wrong; the message names the file and the field.
        """
        from conceptlens._io import read_yaml

        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingFileError(
                f"SynthDerm configuration {p} does not exist; give the path of a YAML file or "
                f"a preset name ({', '.join(list_synthderm_presets())})."
            )
        data = read_yaml(
            p,
            what="SynthDerm configuration",
            fix="see conceptlens/synthderm/presets/ for examples.",
            error=ConfigError,
        )
        return cls.from_dict(data, source=str(p))

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> Any:
        """The configuration as YAML text, or written (atomically) to ``path``.

        Returns
        -------
        str or pathlib.Path
            The text when ``path`` is None, else ``path``.
        """
        import yaml

        from conceptlens._io import atomic_write_text

        header = (
            f"# SynthDerm configuration {self.name!r}: every probability the generator "
            "samples from.\n# Read with SynthDermConfig.from_yaml(path) or "
            "SynthDerm(path); see docs/synthderm.md.\n"
        )
        text = header + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is None:
            return text
        out = Path(path).expanduser()
        atomic_write_text(out, text)
        return out

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
def presets_dir() -> Path:
    """Folder of the shipped preset files (``<name>.yaml``)."""
    return Path(str(importlib.resources.files("conceptlens.synthderm") / "presets"))


def list_synthderm_presets() -> list[str]:
    """Names of the shipped SynthDerm presets (the YAML files in ``presets/``).

    Any other configuration is a YAML file passed by path (``SynthDerm("my.yaml")``).

    Examples
    --------
    >>> list_synthderm_presets()
    ['confounded', 'iid', 'protocol-shift', 'skin-tone-shift']
    """
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def _looks_like_path(name: str | os.PathLike[str]) -> bool:
    text = os.fspath(name)
    return text.lower().endswith((".yaml", ".yml")) or os.sep in text or "/" in text


def get_synthderm_preset(name: str | os.PathLike[str]) -> SynthDermConfig:
    """Return the :class:`SynthDermConfig` of a shipped preset or of a YAML file.

    Parameters
    ----------
    name : str or path
        A name from :func:`list_synthderm_presets`, or the path of a YAML file written
        by :meth:`SynthDermConfig.to_yaml` (or by hand, in the same format).

    Raises
    ------
    UnknownNameError
        If no preset has that name; the message lists the presets.
    MissingFileError, ConfigError
        A path that does not exist, or a file with a wrong field (named in the message).
    """
    if isinstance(name, os.PathLike) or _looks_like_path(name):
        return SynthDermConfig.from_yaml(name)
    if name not in list_synthderm_presets():
        raise UnknownNameError(
            f"unknown SynthDerm preset {name!r}; available presets: {list_synthderm_presets()}. "
            "Pass the path of a YAML configuration (see SynthDermConfig.to_yaml) or a "
            "SynthDermConfig for a custom setup."
        )
    return SynthDermConfig.from_yaml(presets_dir() / f"{name}.yaml")
