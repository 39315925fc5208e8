"""The request bodies of ``POST /v1/personalize`` and ``POST /v1/feedback``."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from ttpkit.online import MAX_N
from ttpkit.policy.base import MAX_SEED
from ttpkit.serve._text import TextRequest
from ttpkit.serve._users import USER_ID

__all__ = ["MAX_ROUND_GAIN", "FeedbackRequest", "PersonalizeRequest"]

MAX_ROUND_GAIN = 100.0  # stds of the RM's score: a larger threshold stops every request after its first round


class PersonalizeRequest(TextRequest):
    """One personalize request: a stored user (``user_id``) or an inline ``profile``, and a new input."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, pattern=USER_ID, description="A user in the store.")
    profile: list[dict[str, Any]] | None = Field(None, description="Inline profile items instead of a stored user.")
    input: str = Field(..., min_length=1, description="The new input (a commit message, a package description...).")
    task: str = Field("git-commits", description="Task name (its fields and prompt labels).")
    n: int = Field(8, ge=1, le=MAX_N, description=f"Candidates to draw (N of best-of-N), at most {MAX_N}.")
    adaptive: bool = Field(False, description="Sample in rounds and stop when the next round's expected gain is small.")
    max_n: int = Field(32, ge=1, le=MAX_N, description=f"Most candidates adaptive sampling draws, at most {MAX_N}.")
    round_size: int = Field(4, ge=1, le=MAX_N, description=f"Candidates per adaptive round, at most {MAX_N}.")
    min_round_gain: float = Field(0.05, ge=0, le=MAX_ROUND_GAIN,
                                  description=f"Adaptive threshold, in RM score stds (0 to {MAX_ROUND_GAIN:g}).")
    rule: str = Field("mean", max_length=64,
                      description="mean | lcb:κ | ucb:κ | thompson (κ finite, >= 0; all but mean need a probabilistic RM).")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Sampling seed (0 to 2**63-1).")

    @model_validator(mode="after")
    def _one_source(self) -> PersonalizeRequest:
        if (self.user_id is None) == (self.profile is None):
            raise ValueError("give exactly one of user_id (a stored user) and profile (inline items)")
        return self


class FeedbackRequest(TextRequest):
    """What the user finally wrote or accepted for a logged request."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(..., min_length=1, max_length=64)
    text: str = Field(..., min_length=1)
