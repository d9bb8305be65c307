"""Checks of user-given values, shared by the config, the datasets, federated and accounting.

Every check returns the normalised value or raises a ValueError whose text names the argument,
the bad value and what is valid. Two families of message:

- config keys (dotted, :class:`ConfigError`): ``privacy.sampling='poison': expected one of
  'poisson', 'shuffle'`` -- :data:`MSG_CHOICE`, :data:`MSG_TYPE`, :data:`MSG_RANGE`;
- keyword arguments of library functions (``ValueError``): ``steps=0: expected an integer
  >= 1`` -- :data:`ERR_INTEGER`, :data:`ERR_CHOICE`, :data:`ERR_SEED`.

It also holds :class:`FrozenMap` and :func:`freeze`, which turn YAML-like values into the
immutable, hashable ones that frozen configs store. Imports nothing from ``disparate``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ERR_CHOICE",
    "ERR_FRACTION",
    "ERR_INTEGER",
    "ERR_SEED",
    "MAX_SEED",
    "MSG_CHOICE",
    "MSG_DID_YOU_MEAN",
    "MSG_DUPLICATE_KEY",
    "MSG_RANGE",
    "MSG_TYPE",
    "MSG_UNKNOWN_KEY",
    "ConfigError",
    "FrozenMap",
    "check_bool",
    "check_choice",
    "check_count_or_fraction",
    "check_float",
    "check_fraction",
    "check_integer",
    "check_int",
    "check_one_of",
    "check_range",
    "check_seed",
    "check_str",
    "choices_text",
    "did_you_mean",
    "freeze",
    "frozen_map",
    "thaw",
    "type_error",
    "unknown_key",
]

#: ``{key}``: dotted key, ``{value}``: the bad value, ``{choices}``: quoted, comma-separated.
MSG_CHOICE = "{key}={value!r}: expected one of {choices}"
#: ``{expected}``: e.g. "a number (float)", ``{got}``: the type name of the value.
MSG_TYPE = "{key}={value!r}: expected {expected}, got {got}"
#: ``{expected}``: the valid range, e.g. ">= 0", "in (0, 1)".
MSG_RANGE = "{key}={value!r}: expected {expected}"
MSG_DUPLICATE_KEY = "{key}: duplicate key {sub!r} (keys are compared as strings)"
#: ``{hint}``: " (did you mean 'x'?)" or "", ``{valid}``: comma-separated valid keys.
MSG_UNKNOWN_KEY = "unknown key {key!r}{hint}; valid keys: {valid}"
MSG_DID_YOU_MEAN = " (did you mean {suggestion!r}?)"

#: Keyword-argument messages: ``{name}`` is the argument.
ERR_INTEGER = "{name}={value!r}: expected an integer >= {minimum}"
ERR_CHOICE = "{name}={value!r}: expected one of {choices}"
ERR_SEED = "{name}={value!r}: expected an int >= 0"
#: ``{interval}``: "[0, 1)" or "[0, 1]".
ERR_FRACTION = "{name}={value!r}: expected a number in {interval}"

#: Largest seed: torch, numpy and the noise generator take seeds of 63 bits.
MAX_SEED = 2**63 - 1


class ConfigError(ValueError):
    """An invalid configuration; the text names the dotted key, the value and what is valid."""


def choices_text(choices: Iterable[str]) -> str:
    """``'a', 'b'``: the choices quoted and comma-separated."""
    return ", ".join(repr(c) for c in choices)


# ------------------------------------------------------------------------- config keys


def type_error(key: str, value: Any, expected: str) -> ConfigError:
    """The error of a value of the wrong type: ``key=value: expected ..., got TYPE``."""
    return ConfigError(
        MSG_TYPE.format(key=key, value=value, expected=expected, got=type(value).__name__)
    )


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` with the closest of ``valid``, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, list(valid), n=1)
    return MSG_DID_YOU_MEAN.format(suggestion=close[0]) if close else ""


def unknown_key(key: str, valid: Sequence[str], *, prefix: str = "") -> ConfigError:
    """The error of a key that is not one of ``valid`` (the keys of the mapping at ``prefix``,
    e.g. ``"privacy."``): names the key, the closest valid one and every valid one."""
    full = [prefix + v for v in valid]
    return ConfigError(MSG_UNKNOWN_KEY.format(
        key=prefix + key, hint=did_you_mean(prefix + key, full), valid=", ".join(valid)))


def check_str(key: str, value: Any, *, optional: bool = False) -> str | None:
    """A non-empty string (or ``None`` if ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise type_error(key, value, "a string" + (" or null" if optional else ""))
    if not value.strip():
        raise ConfigError(MSG_RANGE.format(key=key, value=value, expected="a non-empty string"))
    return value


def check_bool(key: str, value: Any) -> bool:
    """A boolean (an int is not one)."""
    if not isinstance(value, bool):
        raise type_error(key, value, "a boolean (true/false)")
    return value


def check_int(key: str, value: Any, *, minimum: int | None = None,
              maximum: int | None = None, optional: bool = False) -> int | None:
    """An int in ``[minimum, maximum]`` (a bool is not one)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(key, value, "an integer" + (" or null" if optional else ""))
    if minimum is not None and value < minimum:
        raise ConfigError(MSG_RANGE.format(key=key, value=value, expected=f">= {minimum}"))
    if maximum is not None and value > maximum:
        raise ConfigError(MSG_RANGE.format(key=key, value=value, expected=f"<= {maximum}"))
    return value


def check_float(key: str, value: Any, *, optional: bool = False) -> float | None:
    """A finite real number; an int is accepted and converted to float."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(key, value, "a number (float)" + (" or null" if optional else ""))
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(MSG_RANGE.format(key=key, value=value, expected="a finite number"))
    return value


def check_range(key: str, value: float | None, *, gt: float | None = None,
                ge: float | None = None, lt: float | None = None, le: float | None = None,
                expected: str) -> None:
    """Raise unless ``value`` (``None`` passes) meets every given bound."""
    if value is None:
        return
    if ((gt is not None and not value > gt) or (ge is not None and not value >= ge)
            or (lt is not None and not value < lt) or (le is not None and not value <= le)):
        raise ConfigError(MSG_RANGE.format(key=key, value=value, expected=expected))


def check_choice(key: str, value: Any, choices: Sequence[str], *, optional: bool = False
                 ) -> str | None:
    """One of ``choices`` (or ``None`` if ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(
            MSG_CHOICE.format(
                key=key, value=value,
                choices=choices_text(choices) + (" or null" if optional else ""),
            )
        )
    return value


def check_count_or_fraction(key: str, value: Any, *, optional: bool = False,
                            min_count: int = 1) -> int | float | None:
    """An int count >= ``min_count`` or a float fraction in (0, 1]."""
    if value is None and optional:
        return None
    expected = f"an int count >= {min_count} or a float fraction in (0, 1]"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(key, value, expected + (" or null" if optional else ""))
    if isinstance(value, int):
        check_range(key, value, ge=min_count, expected=expected)
    else:
        check_range(key, value, gt=0.0, le=1.0, expected=expected)
    return value


# ------------------------------------------------------------------- keyword arguments


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: an int (numpy ints too) >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(ERR_SEED.format(name=name, value=value))
    return int(value)


def check_integer(name: str, value: Any, minimum: int, *, optional: bool = False
                  ) -> int | None:
    """An int (numpy ints too) >= ``minimum``, or ``None`` if ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(ERR_INTEGER.format(name=name, value=value, minimum=minimum)
                         + (" or null" if optional else ""))
    return int(value)


def check_one_of(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(ERR_CHOICE.format(name=name, value=value, choices=list(choices)))
    return value


def check_fraction(name: str, value: Any, *, closed: bool = False) -> float:
    """A number in [0, 1) (``closed``: [0, 1])."""
    interval = "[0, 1]" if closed else "[0, 1)"
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(ERR_FRACTION.format(name=name, value=value, interval=interval))
    number = float(value)
    if not (0.0 <= number <= 1.0 if closed else 0.0 <= number < 1.0):
        raise ValueError(ERR_FRACTION.format(name=name, value=value, interval=interval))
    return number


# --------------------------------------------------------- immutable YAML-like values


class FrozenMap(Mapping[str, Any]):
    """An immutable, hashable mapping with string keys, iterated in sorted key order.

    Compares equal to a ``dict`` with the same items. Nested lists become tuples and nested
    mappings become :class:`FrozenMap` (see :func:`freeze`).
    """

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        data = dict(items)
        self._data: dict[str, Any] = {k: data[k] for k in sorted(data)}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


_SCALARS = (str, int, float, bool, type(None))


def freeze(key: str, value: Any) -> Any:
    """Make a YAML-like value (scalars, lists, string-keyed mappings) immutable and hashable."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(MSG_RANGE.format(key=key, value=value, expected="a finite number"))
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        return frozen_map(key, value, freeze)
    if isinstance(value, list | tuple):
        return tuple(freeze(f"{key}[{i}]", v) for i, v in enumerate(value))
    raise type_error(key, value, "a YAML value (string, number, boolean, null, list, mapping)")


def frozen_map(key: str, value: Any, check_value: Callable[[str, Any], Any], *,
               int_keys: bool = False) -> FrozenMap:
    """Validate a mapping's keys (strings; ints too if ``int_keys``) and values into a FrozenMap.

    ``check_value(dotted_key, value)`` checks and normalises each value.
    """
    if value is None:
        return FrozenMap()
    if not isinstance(value, Mapping):
        raise type_error(key, value, "a mapping")
    out: dict[str, Any] = {}
    for k, v in value.items():
        if int_keys and isinstance(k, int) and not isinstance(k, bool):
            k = str(k)
        if not isinstance(k, str) or not k:
            raise type_error(
                f"{key} key", k, "a non-empty string" + (" or an integer" if int_keys else "")
            )
        if k in out:
            raise ConfigError(MSG_DUPLICATE_KEY.format(key=key, sub=k))
        out[k] = check_value(f"{key}.{k}", v)
    return FrozenMap(out)


def thaw(value: Any) -> Any:
    """Inverse of :func:`freeze`: plain dicts and lists, safe for JSON and YAML."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value
