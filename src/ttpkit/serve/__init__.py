"""HTTP service: OpenAI-compatible sampling, batched across requests, and TTP over a profile store.

- :mod:`ttpkit.serve.app`: :func:`create_app`, the FastAPI app (routes, limits, middleware), and
  :func:`create_service`, the whole service (``ttpkit serve``).
- :mod:`ttpkit.serve._personalize`: ``/v1/personalize`` and ``/v1/feedback`` (:class:`Personalizer`);
  :mod:`ttpkit.serve._requests` their bodies; :mod:`ttpkit.serve._batched` a request's policy and RM over the batcher.
- :mod:`ttpkit.serve._users`: profile and key routes.
- :mod:`ttpkit.serve._auth`: the admin key and per-user keys.
- :mod:`ttpkit.serve._store`: :class:`ProfileStore` (SQLAlchemy 2: SQLite with WAL, or PostgreSQL, shared by replicas);
  :mod:`ttpkit.serve._schema` its tables and migrations, :mod:`ttpkit.serve._logbook` logged requests and feedback,
  :mod:`ttpkit.serve._claim` one server per SQLite file, :mod:`ttpkit.serve._ready` ``GET /ready``.
- :mod:`ttpkit.serve._openai`: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``
  (seeds, streaming, ``usage`` and ``finish_reason``); :mod:`ttpkit.serve._openai_requests` their
  Pydantic requests and size limits.
- :mod:`ttpkit.serve._batch`: :class:`Batcher`, concurrent requests in one ``complete_many`` batch.
- :mod:`ttpkit.serve._scoring`: :class:`ScoreGroup`, a decode batch's personalize requests in one RM pass.
- :mod:`ttpkit.serve._metrics`: :class:`Metrics`, Prometheus metrics in a per-app registry.
"""

from ttpkit.serve._batch import Batcher
from ttpkit.serve._metrics import Metrics
from ttpkit.serve._openai import (
    MAX_N,
    MAX_PROMPT_CHARS,
    MAX_PROMPTS,
    MAX_REQUEST_TOKENS,
    MAX_SAMPLES,
    MAX_TOKENS,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    count_tokens,
)
from ttpkit.serve.app import create_service
from ttpkit.serve._store import ProfileStore, StoreError
from ttpkit.serve.app import MAX_BODY_BYTES, create_app

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_N",
    "MAX_PROMPTS",
    "MAX_PROMPT_CHARS",
    "MAX_REQUEST_TOKENS",
    "MAX_SAMPLES",
    "MAX_TOKENS",
    "Batcher",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "Metrics",
    "ProfileStore",
    "StoreError",
    "count_tokens",
    "create_app",
    "create_service",
]
