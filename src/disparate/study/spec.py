"""The study definition: the YAML schema, its checks and the resolved :class:`Study`.

A study is a YAML file (shipped ones in ``src/disparate/study/shipped/*.yaml``: ``fig4``,
``fig5a`` .. ``fig5d``, ``fig2a``; a user's own by path); ``docs/studies.md`` describes its
keys. The overrides of a point are applied in this order (a later one wins): the study's
``set``, the scale's ``set``, the caller's ``--set``, the variant's ``set``, the grid values,
``training.seed``. A scale may also replace the ``base``, the ``seeds`` and entries of
``figure``; its ``grid`` (and the caller's ``--grid``) replaces the values of a grid key
wherever the key appears (a new key joins the study's grid). ``figure.kind`` names a kind of
:mod:`disparate.study.figures`, which checks the rest of ``figure``.

A ``mitigation`` section (:class:`MitigationStudy`: ``methods``, ``target_epsilon``, ``tune``,
``tune_objective``; a scale may replace its entries) makes the study a comparison of clipping
policies at one epsilon, as ``disparate mitigate`` (:mod:`disparate.mitigation`): its variants
are the non-private reference and one per method, its figure kind is ``mitigation``, and it has
no grid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from disparate.config import ConfigError, parse_override
from disparate.config.yaml_loader import yaml_error, yaml_load
from disparate.study.figures import FIGURE_KINDS, figure_kind
from disparate.validation import did_you_mean

__all__ = [
    "FIGURE_KEYS",
    "MitigationStudy",
    "SEED_KEY",
    "SHIPPED_DIR",
    "STUDY_KEYS",
    "Study",
    "Variant",
    "list_studies",
    "load_study",
    "parse_grid_option",
]

STUDY_KEYS: tuple[str, ...] = ("name", "title", "description", "base", "set", "seeds",
                               "variants", "grid", "figure", "scales", "paper", "mitigation")
SCALE_KEYS: tuple[str, ...] = ("base", "set", "grid", "seeds", "figure", "description",
                               "mitigation")
MITIGATION_KEYS: tuple[str, ...] = ("methods", "target_epsilon", "tune", "tune_objective")
MITIGATION_KIND = "mitigation"
VARIANT_KEYS: tuple[str, ...] = ("name", "label", "set", "grid")
FIGURE_KEYS: tuple[str, ...] = ("kind", "x", "x_label", "log_x", "best_of", "epochs",
                                "epsilon_axis", "title")
SEED_KEY = "training.seed"
#: The folder of the shipped study YAMLs inside this package.
SHIPPED_DIR = "shipped"



@dataclass(frozen=True)
class Variant:
    """A named set of overrides (e.g. a privacy mode), with a grid of its own."""

    name: str
    label: str
    set: tuple[str, ...] = ()
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()


@dataclass(frozen=True, kw_only=True)
class MitigationStudy:
    """The ``mitigation`` section: clipping policies compared at ``target_epsilon``, each
    given ``tune`` trials scored by ``tune_objective`` (:mod:`disparate.mitigation`)."""

    methods: tuple[str, ...]
    target_epsilon: float
    tune: int = 0
    tune_objective: str = "overall"

    def __post_init__(self) -> None:
        from disparate.mitigation import check_target, check_tuning, parse_methods

        if (isinstance(self.methods, str) or not isinstance(self.methods, Sequence)
                or not all(isinstance(m, str) for m in self.methods)):
            raise ConfigError(f"mitigation.methods={self.methods!r}: expected a list of method "
                              "names")
        try:
            object.__setattr__(self, "methods", tuple(parse_methods(",".join(self.methods))))
            object.__setattr__(self, "target_epsilon", check_target(self.target_epsilon))
            check_tuning(self.tune, self.tune_objective)
        except ValueError as exc:  # the command's messages, with this section's key names
            raise ConfigError(str(exc).replace("--target-epsilon", "mitigation.target_epsilon")
                              .replace("--tune-objective", "mitigation.tune_objective")
                              .replace("--methods", "mitigation.methods")
                              .replace("--tune", "mitigation.tune")) from None


def _mitigation(where: str, data: Any, scale: Any) -> MitigationStudy | None:
    if data is None and scale is None:
        return None
    merged: dict[str, Any] = {}
    for key, value in ((where, data), (f"{where} scale", scale)):
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: mitigation={value!r}: expected a mapping with keys "
                              f"{', '.join(MITIGATION_KEYS)}")
        _check_keys(f"{key}: mitigation", value, MITIGATION_KEYS)
        merged.update(value)
    for key in ("methods", "target_epsilon"):
        if key not in merged:
            raise ConfigError(f"{where}: mitigation.{key} is missing")
    return MitigationStudy(**merged)


@dataclass(frozen=True)
class Study:
    """A resolved study: one scale chosen, the caller's overrides merged in."""

    name: str
    title: str
    description: str
    base: str
    scale: str
    set: tuple[str, ...]
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    figure: Mapping[str, Any]
    paper: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    scales: tuple[str, ...] = ()
    mitigation: MitigationStudy | None = None

    @property
    def grid_keys(self) -> list[str]:
        """Every grid key of the study and its variants, in order of first appearance."""
        keys: list[str] = []
        for k, _ in self.grid:
            if k not in keys:
                keys.append(k)
        for v in self.variants:
            for k, _ in v.grid:
                if k not in keys:
                    keys.append(k)
        return keys

    def to_dict(self) -> dict[str, Any]:
        """The resolved study as plain data (saved as ``study.yaml``)."""
        return {
            "name": self.name, "title": self.title, "description": self.description,
            "base": self.base, "scale": self.scale, "set": list(self.set),
            "seeds": list(self.seeds),
            "variants": [{"name": v.name, "label": v.label, "set": list(v.set),
                          "grid": {k: list(vals) for k, vals in v.grid}}
                         for v in self.variants],
            "grid": {k: list(vals) for k, vals in self.grid},
            "figure": dict(self.figure), "paper": dict(self.paper), "source": self.source,
            **({"mitigation": {**dataclasses.asdict(self.mitigation),
                               "methods": list(self.mitigation.methods)}}
               if self.mitigation is not None else {}),
        }


def _studies_dir() -> Any:
    return resources.files("disparate.study") / SHIPPED_DIR


def list_studies() -> list[str]:
    """Names of the shipped studies (``src/disparate/study/shipped/*.yaml``), sorted."""
    directory = _studies_dir()
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in directory.iterdir()
                  if p.name.endswith(".yaml"))


def _read_study_source(name_or_path: str) -> tuple[dict[str, Any], str]:
    is_path = name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path
    if is_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"study file {name_or_path!r} does not exist")
        text, source, default_name = path.read_text(encoding="utf-8"), str(path), path.stem
    else:
        names = list_studies()
        if name_or_path not in names:
            hint = did_you_mean(name_or_path, names)
            raise ConfigError(f"unknown study {name_or_path!r}{hint}; shipped studies: "
                              f"{', '.join(names)} (or give a path to a study .yaml file)")
        text = (_studies_dir() / f"{name_or_path}.yaml").read_text(encoding="utf-8")
        source, default_name = (f"disparate/study/{SHIPPED_DIR}/{name_or_path}.yaml",
                                   name_or_path)
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {yaml_error(exc)}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with keys {', '.join(STUDY_KEYS)}")
    data = dict(data)
    data.setdefault("name", default_name)
    return data, source


def _check_keys(where: str, data: Mapping[str, Any], valid: Sequence[str]) -> None:
    for k in data:
        if k not in valid:
            raise ConfigError(f"{where}: unknown key {k!r}{did_you_mean(str(k), valid)}; "
                              f"valid keys: {', '.join(valid)}")


def _overrides(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{where}={value!r}: expected a list of KEY=VALUE overrides")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{where}[{i}]={item!r}: expected a KEY=VALUE string")
        parse_override(item)  # raises a ConfigError naming the override
    return tuple(value)


def _grid(where: str, value: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}={value!r}: expected a mapping KEY: [values]")
    out = []
    for k, vals in value.items():
        if not isinstance(k, str) or "." not in k:
            raise ConfigError(f"{where}: key {k!r}: expected a dotted config key such as "
                              "training.batch_size")
        if k == SEED_KEY:
            raise ConfigError(f"{where}: {SEED_KEY} is set by 'seeds', not by the grid")
        if isinstance(vals, str) or not isinstance(vals, list | tuple) or not vals:
            raise ConfigError(f"{where}.{k}={vals!r}: expected a non-empty list of values")
        out.append((k, tuple(vals)))
    return tuple(out)


def _seeds(where: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ConfigError(f"{where}={value!r}: expected a count >= 1 or a list of seeds")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where}={value!r}: expected a count >= 1 or a list of seeds")
        return tuple(range(value))
    if isinstance(value, list | tuple) and value and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}={value!r}: seeds must be distinct")
        return tuple(value)
    raise ConfigError(f"{where}={value!r}: expected a count >= 1 or a list of seeds >= 0")


def _replace_grid(grid: tuple[tuple[str, tuple[Any, ...]], ...],
                  replacements: Mapping[str, tuple[Any, ...]]
                  ) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    return tuple((k, replacements.get(k, vals)) for k, vals in grid)


def parse_grid_option(text: str) -> tuple[str, tuple[Any, ...]]:
    """``"training.batch_size=[64, 256]"`` (or ``=64,256``) -> (key, values)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--grid {text!r}: expected KEY=[v1, v2, ...]")
    raw = raw.strip()
    if not raw.startswith("["):
        raw = f"[{raw}]"
    try:
        values = yaml_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--grid {text!r}: values are not valid YAML: {yaml_error(exc)}"
                          ) from exc
    return _grid("--grid", {key: values})[0]


def load_study(
    name_or_path: str,
    *,
    scale: str = "quick",
    overrides: Sequence[str] = (),
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: int | Sequence[int] | None = None,
) -> Study:
    """Load a shipped study by name, or a study YAML by path, at ``scale``.

    Args:
        name_or_path: ``fig4``, ``fig5a`` .. ``fig5d`` or a ``.yaml`` path.
        scale: A scale of the study (``quick``, ``paper``, ``smoke`` for the shipped ones).
        overrides: ``KEY=VALUE`` overrides for every point (after the study's and the
            scale's ``set``, before the variants and the grid).
        grid: Replacement values of grid keys (a new key joins the study's grid).
        seeds: A count or list of seeds, replacing the study's and the scale's.
    """
    data, source = _read_study_source(name_or_path)
    _check_keys(source, data, STUDY_KEYS)
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: name={name!r}: expected a non-empty string")
    scales = data.get("scales") or {}
    if not isinstance(scales, Mapping):
        raise ConfigError(f"{source}: scales={scales!r}: expected a mapping NAME: {{...}}")
    if scale not in scales:
        raise ConfigError(f"scale={scale!r}: study {name!r} has the scales "
                          f"{', '.join(map(repr, scales)) or 'none'}")
    sc = scales[scale] or {}
    if isinstance(sc, list):
        sc = {"set": sc}
    if not isinstance(sc, Mapping):
        raise ConfigError(f"{source}: scales.{scale}={sc!r}: expected a mapping")
    _check_keys(f"{source}: scales.{scale}", sc, SCALE_KEYS)

    base = sc.get("base", data.get("base"))
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{source}: base={base!r}: expected an experiment preset name or path")
    if base.endswith((".yaml", ".yml")) and not Path(base).is_absolute() and "/" in source:
        candidate = Path(source).parent / base
        if candidate.is_file():
            base = str(candidate)

    mitigation = _mitigation(source, data.get("mitigation"), sc.get("mitigation"))
    if mitigation is not None:
        for key in ("variants", "grid"):
            if data.get(key) or (key == "grid" and (sc.get("grid") or grid)):
                raise ConfigError(f"{source}: {key} with a mitigation section: its variants are "
                                  "the non-private reference and one per method, and it has "
                                  "no grid")
    variants_data = (data.get("variants") or [{"name": "default"}] if mitigation is None else
                     [{"name": v} for v in ("non-private", *mitigation.methods)])
    if not isinstance(variants_data, list):
        raise ConfigError(f"{source}: variants={variants_data!r}: expected a list")
    variants: list[Variant] = []
    replacements: dict[str, tuple[Any, ...]] = dict(_grid(f"{source}: scales.{scale}.grid",
                                                          sc.get("grid")))
    if grid:
        replacements.update(_grid("grid", dict(grid)))
    for i, v in enumerate(variants_data):
        where = f"{source}: variants[{i}]"
        if not isinstance(v, Mapping):
            raise ConfigError(f"{where}={v!r}: expected a mapping with keys "
                              f"{', '.join(VARIANT_KEYS)}")
        _check_keys(where, v, VARIANT_KEYS)
        vname = v.get("name")
        if not isinstance(vname, str) or not vname:
            raise ConfigError(f"{where}: name={vname!r}: expected a non-empty string")
        if any(x.name == vname for x in variants):
            raise ConfigError(f"{where}: duplicate variant name {vname!r}")
        variants.append(Variant(
            name=vname, label=str(v.get("label") or vname),
            set=_overrides(f"{where}.set", v.get("set")),
            grid=_replace_grid(_grid(f"{where}.grid", v.get("grid")), replacements)))

    study_grid = _replace_grid(_grid(f"{source}: grid", data.get("grid")), replacements)
    present = {k for k, _ in study_grid} | {k for v in variants for k, _ in v.grid}
    study_grid += tuple((k, vals) for k, vals in replacements.items() if k not in present)

    seed_value = seeds if seeds is not None else sc.get("seeds", data.get("seeds", 1))
    figure = dict(data.get("figure") or {"kind": "sweep" if mitigation is None
                                         else MITIGATION_KIND})
    figure.update(sc.get("figure") or {})
    _check_keys(f"{source}: figure", figure, FIGURE_KEYS)
    kind = figure.get("kind", "sweep")
    if (kind == MITIGATION_KIND) != (mitigation is not None):
        raise ConfigError(f"{source}: figure.kind={kind!r}: the kind {MITIGATION_KIND!r} goes "
                          "with a mitigation section, and only with one")
    if kind not in FIGURE_KINDS:
        raise ConfigError(f"{source}: figure.kind={kind!r}: expected one of "
                          f"{', '.join(map(repr, sorted(FIGURE_KINDS)))}")
    figure["kind"] = kind
    study = Study(
        name=name,
        title=str(data.get("title") or name),
        description="\n\n".join(str(d).strip() for d in (data.get("description"),
                                                          sc.get("description")) if d),
        base=base,
        scale=scale,
        set=(_overrides(f"{source}: set", data.get("set"))
             + _overrides(f"{source}: scales.{scale}.set", sc.get("set"))
             + _overrides("--set", list(overrides))),
        seeds=_seeds("seeds", seed_value),
        variants=tuple(variants),
        grid=study_grid,
        figure=figure,
        paper=dict(data.get("paper") or {}),
        source=source,
        scales=tuple(scales),
        mitigation=mitigation,
    )
    figure_kind(kind).check(study, source)
    return study
