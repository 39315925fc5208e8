"""The request bodies' one rule for text: every string must be valid Unicode, or the request is a 422 naming the field.

JSON allows a ``\\ud800`` escape (half of a UTF-16 pair), which Python decodes to
a lone surrogate that no tokenizer, hash or database can encode: a 500 deep in
the request. :class:`TextRequest`, the base of every request model, refuses it
before any route runs, with the same rule as the files and options
(:func:`ttpkit.text.find_bad_text`), naming the field (``profile[0].title``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator

from ttpkit.text import find_bad_text

__all__ = ["TextRequest"]


class TextRequest(BaseModel):
    """A request body whose strings (nested ones and keys too) must all be valid Unicode."""

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        bad = find_bad_text(data)
        if bad is not None:
            raise ValueError(f"{bad[0]} is not valid UTF-8 text ({bad[1]})")
        return data
