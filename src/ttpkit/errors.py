"""Errors that ttpkit reports to users (the CLI prints them and exits with code 2)."""

from __future__ import annotations

__all__ = ["ArgumentError", "ConfigError", "DataError", "NotFittedError", "StorageError", "TtpkitError"]


class TtpkitError(Exception):
    """A problem with the user's input or configuration, reported without a traceback."""


class DataError(TtpkitError, ValueError):
    """A data file is missing or malformed; the message names the file, record and field."""


class ConfigError(TtpkitError, ValueError):
    """A setting is out of range or unknown; the message names it and what is allowed."""


class NotFittedError(ConfigError):
    """A model was used before ``fit()`` or ``load()``; every model kind raises this one."""


class StorageError(TtpkitError, OSError):
    """A file could not be written (a full disk, a read-only place, no permission); the message names the path.

    Also an :class:`OSError`, so code that treats a failed write as optional (the embedding cache) still catches it.
    """


class ArgumentError(ConfigError, TypeError):
    """An argument of the public API of a type it does not take; the message names the function, the argument,
    the type given and what is allowed (:func:`ttpkit._args.checked`).

    Also a :class:`TypeError`, as Python's own for a wrong type, so code that catches either keeps working.
    """
