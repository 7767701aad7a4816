"""The one private cattrs converter, and the helpers that decode bodies at the edge.

Decoding is strict about shape (a string where a number belongs is an error, never a
silent ``str(...)``) and lenient about novelty (unknown fields are ignored, unknown enum
values are kept as raw strings). Every failure becomes a ``ProtocolError`` with a short
excerpt of the body.
"""

from __future__ import annotations

import enum
import functools
import json
import types
import typing
from datetime import datetime, timezone
from typing import Any, TypeVar

import cattrs

from ._exceptions import ProtocolError

__all__ = ["OpenEnum", "converter", "decode", "excerpt", "parse_datetime", "parse_json"]

T = TypeVar("T")

_EXCERPT_CHARS = 120


def excerpt(text: str | bytes, limit: int = _EXCERPT_CHARS) -> str:
    """A short, single-line, printable excerpt of a body for an error message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def parse_datetime(value: object) -> datetime:
    """ISO 8601 / RFC 3339 text to an aware datetime (naive input is taken as UTC)."""
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)  # ValueError on garbage
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _strict_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _strict_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _strict_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


@functools.cache
def _open_enum_of(tp: Any) -> type[enum.Enum] | None:
    """For ``SomeEnum | str`` (optionally ``| None``) return ``SomeEnum``."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
    if len(args) == 2 and str in args and len(enums) == 1:
        return enums[0]
    return None


def _structure_open_enum(value: object, tp: Any) -> object:
    enum_cls = _open_enum_of(tp)
    assert enum_cls is not None
    if value is None and type(None) in typing.get_args(tp):
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    try:
        return enum_cls(value)
    except ValueError:
        return value  # a value newer than this client: keep the raw string


def _make_converter(*, detailed: bool) -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False, detailed_validation=detailed)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(datetime, lambda v, _: parse_datetime(v))
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat())
    conv.register_structure_hook_func(lambda t: _open_enum_of(t) is not None, _structure_open_enum)
    return conv


#: The converter of the happy path: no per-field bookkeeping, about twice as fast.
converter = _make_converter(detailed=False)
#: Run again on a body that failed, to say which field was wrong.
_explainer = _make_converter(detailed=True)


def _first_leaf(exc: BaseException) -> str:
    """The innermost message of a cattrs validation error, with where it happened."""
    where: list[str] = []
    while isinstance(exc, cattrs.BaseValidationError) and exc.exceptions:
        exc = exc.exceptions[0]
        where.extend(str(note) for note in getattr(exc, "__notes__", [])[:1])
    message = f"{type(exc).__name__}: {exc}"
    return f"{message} at {' / '.join(where)}" if where else message


def decode(cls: type[T], data: object, *, what: str, raw: str | bytes = "") -> T:
    """Structure ``data`` into ``cls``, or raise ``ProtocolError`` naming ``what``."""
    if not isinstance(data, dict):
        got = type(data).__name__
        raise ProtocolError(
            f"{what}: expected a JSON object, got {got}: {excerpt(raw or str(data))}"
        )
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError, AttributeError) as fast:
        failure: BaseException = fast
    try:
        _explainer.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as detailed:
        failure = detailed
    detail = _first_leaf(failure)
    raise ProtocolError(
        f"{what}: unexpected shape ({detail}): {excerpt(raw or json.dumps(data))}"
    ) from failure


def parse_json(raw: bytes, *, what: str) -> object:
    """Bytes to a JSON value, or ``ProtocolError`` with an excerpt."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what}: the body is not JSON: {excerpt(raw)!r}") from exc
    except RecursionError:  # nested deeper than the decoder goes: not an answer of ours
        raise ProtocolError(f"{what}: the body is nested too deeply to read") from None


class OpenEnum(str, enum.Enum):
    """A string enum whose ``str()`` is its wire value (``KI-1``, not ``KIRating.KI_1``)."""

    def __str__(self) -> str:
        return str(self.value)
