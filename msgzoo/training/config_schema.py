"""Typed config schemas: dataclasses whose fields are a recipe's config fields, each with its type and range.

The recipes' YAML holds the values; a schema says which fields exist, the type each takes (its annotation) and the
range (:func:`setting`). A method's schema (``SGOCConfig``, ... in :mod:`msgzoo.training.methods`) lists only the
fields the method reads, a task's schema (:mod:`msgzoo.runtime.config_validation`) the fields every method of the
task reads; a composed config is checked against them field by field, and a method's run is identified (config
hash, resume checks) by the fields it reads alone. Schemas are never instantiated: their fields are the schema.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable


class ConfigError(ValueError):
    """A config field with a bad value; the message names the field, the value and the fix."""


@dataclass(frozen=True)
class Setting:
    """One leaf field of a schema: its Python type(s), whether null is allowed, and its range check."""

    types: tuple[type, ...]
    nullable: bool
    ok: Callable[[Any], bool] | None
    expected: str | None
    example: Any

    def check(self, name: str, value: Any) -> None:
        """Raises :class:`ConfigError` naming ``name``, ``value`` and a fix unless ``value`` fits."""
        if value is None and self.nullable:
            return
        if value is not None and _has_type(value, self.types) and (self.ok is None or self.ok(value)):
            return
        expected = self.expected or " or ".join(TYPE_WORDS[t] for t in self.types)
        if self.nullable:
            expected += " (or null)"
        fail(name, value, expected, f"set {name}={self.example} (on the command line or in the recipe's YAML).")


def fail(field: str, value: Any, expected: str, fix: str) -> None:
    """Raises the :class:`ConfigError` of a bad ``field``: ``<field>=<value> is invalid: expected ... Fix: ...``."""
    raise ConfigError(f"{field}={value!r} is invalid: expected {expected}. Fix: {fix}")


def setting(ok: Callable[[Any], bool] | None = None, expected: str | None = None, example: Any = None) -> Any:
    """A schema field: ``ok(value)`` checks its range (its annotation checks its type); ``expected`` says in words
    what it takes and ``example`` is the value a fix suggests."""
    return dataclasses.field(metadata={"ok": ok, "expected": expected, "example": example})


#: How an error message names each type a field may take.
TYPE_WORDS = {
    bool: "true or false (a word such as 'off' or 'no' is not read as false)",
    int: "an integer",
    float: "a finite number",
    str: "a string",
    list: "a list",
}


def _has_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types  # a bool is an int to Python, never to a schema
    if isinstance(value, int) and (int in types or float in types):
        return True  # YAML writes 20.0 as 20 as readily
    if isinstance(value, float):
        return float in types and math.isfinite(value)
    if isinstance(value, str):
        return str in types
    # lists come as ListConfig (or tuples): any non-string sequence
    return list in types and not isinstance(value, (dict, bytes)) and hasattr(value, "__iter__") and not hasattr(
        value, "keys")


def _leaf(annotation: Any, meta: typing.Mapping, name: str) -> Setting:
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, _UnionType) else (annotation,)
    types = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
    if not all(t in TYPE_WORDS for t in types):
        raise TypeError(f"schema field {name}: annotation {annotation!r} is not one of {list(TYPE_WORDS)} (or None).")
    return Setting(types, type(None) in args, meta.get("ok"), meta.get("expected"), meta.get("example"))


_UnionType = type(int | None)


@lru_cache(maxsize=None)
def schema_fields(schema: type, prefix: str = "") -> dict[str, Setting]:
    """``{"loss.sender_gamma": Setting, ...}``: every leaf field of ``schema`` (nested schemas are sections)."""
    hints = typing.get_type_hints(schema)
    out: dict[str, Setting] = {}
    for f in dataclasses.fields(schema):
        name = f"{prefix}{f.name}"
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            out.update(schema_fields(annotation, name + "."))
        else:
            out[name] = _leaf(annotation, f.metadata, name)
    return out


def merge_fields(*schemas: type) -> dict[str, Setting]:
    """The leaf fields of several schemas together (a task's and a method's: one run's config)."""
    out: dict[str, Setting] = {}
    for schema in schemas:
        out.update(schema_fields(schema))
    return out


def under(field: str, prefixes: typing.Iterable[str]) -> bool:
    """``field`` is one of ``prefixes`` or inside one of them (``"loss.epsilon"`` is under ``"loss"``)."""
    return any(field == p or field.startswith(p + ".") for p in prefixes)


# ---------------------------------------------------------------- range checks shared by the schemas
def number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive(v) -> bool:
    return number(v) and v > 0


def non_negative(v) -> bool:
    return number(v) and v >= 0


def positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def probability(v) -> bool:
    return number(v) and 0 <= v <= 1


def learning_rate(v) -> bool:
    return number(v) and 0 < v <= 1  # Adam: a step of more than 1 per update is a typo (1e38 overflows in Adam)


def one_of(options: typing.Sequence[str]) -> Callable[[Any], bool]:
    return lambda v: v in options


DISCOUNT = dict(ok=probability, expected="a discount in [0, 1]", example=0.99)
LEARNING_RATE = dict(ok=learning_rate, expected="a learning rate in (0, 1]", example=1e-3)
COEFFICIENT = dict(ok=non_negative, expected="a non-negative coefficient", example=0.0)
