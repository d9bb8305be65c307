"""``data.options.sources``: which sources are read, from where, in which format."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disparate.data.faces.dif import scan_dif
from disparate.data.faces.fairface import scan_fairface
from disparate.data.faces.records import (
    DEFAULT_PATHS,
    FAIRFACE_RACES,
    FORMATS,
    UTKFACE_RACES,
    FaceRecord,
    FaceScanReport,
)
from disparate.data.faces.utkface import scan_utkface, scan_utkface_wild


@dataclass(frozen=True)
class SourceSpec:
    """One configured source: its name (used in groups), format, folder and format options."""

    name: str
    format: str
    path: Path
    options: Mapping[str, Any] = field(default_factory=dict)


_SOURCE_KEYS = {"utkface": (), "utkface-wild": (), "fairface": (),
                "dif": ("metadata", "images", "columns")}


def parse_sources(value: Any, root: Path) -> list[SourceSpec]:
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, Sequence) or not value:
        raise ValueError(f"sources={value!r}: expected a non-empty list of formats "
                         f"({', '.join(FORMATS)}) or mappings with a 'format' key")
    specs: list[SourceSpec] = []
    for i, item in enumerate(value):
        what = f"sources[{i}]"
        if isinstance(item, str):
            item = {"format": item}
        if not isinstance(item, Mapping):
            raise ValueError(f"{what}={item!r}: expected a format name or a mapping")
        fmt = item.get("format")
        if fmt not in FORMATS:
            raise ValueError(f"{what}.format={fmt!r}: expected one of {list(FORMATS)}")
        valid = ("format", "name", "path", *_SOURCE_KEYS[fmt])
        unknown = sorted(str(k) for k in item if k not in valid)
        if unknown:
            raise ValueError(f"{what}: unknown key(s) {unknown} for format {fmt!r}; valid "
                             f"keys are {list(valid)}")
        name = str(item.get("name") or fmt)
        if name in (s.name for s in specs):
            raise ValueError(f"{what}.name={name!r}: source names must be unique")
        path = Path(str(item.get("path") or DEFAULT_PATHS[fmt])).expanduser()
        options = {k: v for k, v in item.items() if k in _SOURCE_KEYS[fmt]}
        specs.append(SourceSpec(name, fmt, path if path.is_absolute() else root / path,
                                options))
    return specs


def scan_source(spec: SourceSpec) -> tuple[list[FaceRecord], FaceScanReport]:
    """Read one configured source (dispatch on its format)."""
    if spec.format == "utkface":
        return scan_utkface(spec.path, source=spec.name)
    if spec.format == "utkface-wild":
        return scan_utkface_wild(spec.path, source=spec.name)
    if spec.format == "fairface":
        return scan_fairface(spec.path, source=spec.name)
    opts = dict(spec.options)
    columns = opts.get("columns")
    if columns is not None and not isinstance(columns, Mapping):
        raise ValueError(f"source {spec.name!r}: columns={columns!r}: expected a mapping "
                         "role -> column name")
    return scan_dif(spec.path, source=spec.name, metadata=opts.get("metadata"),
                    images=str(opts.get("images") or "images"), columns=columns)


def races_of(formats: Iterable[str]) -> list[str]:
    out: list[str] = []
    for fmt in formats:
        vocab = {"utkface": UTKFACE_RACES, "utkface-wild": UTKFACE_RACES,
                 "fairface": FAIRFACE_RACES}.get(fmt, ())
        out += [r for r in vocab if r not in out]
    return out
