"""The public API's argument checks at the door, as scikit-learn's parameter validation does.

:func:`checked` decorates a public function (``ttpkit.personalize``, ``load_split``, the stages,
:class:`ttpkit.client.Client`'s methods) with what each argument may be. A call with another type raises
:class:`~ttpkit.errors.ArgumentError` (a ``ConfigError`` and a ``TypeError``) before the body runs, naming
the function, the argument, the type given and what is allowed::

    personalize(): argument 'rule' must be a str (a rule: mean, lcb:κ, ucb:κ, thompson), not NoneType (None)

Only types (and the types of a list's items) are checked here; ranges and known names stay with the
function, which has the words for them (``Schedule.check``, ``Rule.parse``). Only the arguments given are
checked: the defaults are right by construction.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ttpkit.errors import ArgumentError
from ttpkit.text import find_bad_text

__all__ = ["Allowed", "BOOL", "INT", "PATH", "REAL", "STR", "TEXT", "checked", "has", "instance", "list_of", "optional"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Allowed:
    """What one argument may be: ``test(value)`` is true, and ``says`` tells the user what that is (``"a str"``)."""

    test: Callable[[Any], bool]
    says: str

    def __or__(self, other: Allowed) -> Allowed:
        return Allowed(lambda v: self.test(v) or other.test(v), f"{self.says} or {other.says}")


def instance(*types: type, says: str) -> Allowed:
    """An instance of one of ``types``."""
    return Allowed(lambda v: isinstance(v, types), says)


def has(method: str, says: str) -> Allowed:
    """Any object with a callable ``method`` (a policy's ``sample``, an encoder's ``encode``): fakes and new kinds pass.

    Text is never one (``str.encode`` is no encoder).
    """
    return Allowed(lambda v: callable(getattr(v, method, None)) and not isinstance(v, (str, bytes)), says)


def optional(allowed: Allowed) -> Allowed:
    """``allowed`` or None."""
    return Allowed(lambda v: v is None or allowed.test(v), f"{allowed.says} or None")


def list_of(item: Allowed, says: str) -> Allowed:
    """A list or tuple whose every item is ``item`` (never a str or bytes, which iterate too)."""
    return Allowed(lambda v: isinstance(v, (list, tuple)) and all(item.test(x) for x in v), says)


STR = instance(str, says="a str")
TEXT = Allowed(lambda v: isinstance(v, str) and find_bad_text(v) is None, "a str of valid Unicode (no lone surrogate)")
BOOL = Allowed(lambda v: isinstance(v, bool) or type(v).__name__ == "bool_", "a bool")
INT = Allowed(lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool), "an int")  # True is no count
REAL = Allowed(lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool), "a number")
PATH = instance(str, os.PathLike, says="a path (str or pathlib.Path)")


def _shown(value: Any) -> str:
    """The type and a short repr of a value given: ``NoneType (None)``, ``bytes (b'fix it')``."""
    text = repr(value)
    return f"{type(value).__name__} ({text[:40] + '…' if len(text) > 40 else text})"


def checked(**rules: Allowed) -> Callable[[F], F]:
    """Check the arguments named in ``rules`` on every call of the decorated function.

    Raises:
        ArgumentError: For an argument that fails its rule, or a call the signature does not take
            (an unknown keyword, a missing argument), naming the function.
    """

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        where = fn.__qualname__.removesuffix(".__init__") + "()"
        unknown = set(rules) - set(sig.parameters)
        if unknown:  # a typo in a rule would check nothing, silently
            raise TypeError(f"{where}: rules for arguments it does not take: {', '.join(sorted(unknown))}")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                given = sig.bind(*args, **kwargs).arguments
            except TypeError as e:
                raise ArgumentError(f"{where}: {e}") from None
            for name, value in given.items():
                rule = rules.get(name)
                if rule is not None and not rule.test(value):
                    raise ArgumentError(f"{where}: argument {name!r} must be {rule.says}, not {_shown(value)}")
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
