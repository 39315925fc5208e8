"""The checks of a policy setting that need no model: a model file or directory, a server URL.

:meth:`ttpkit.policy.PolicySpec.check` runs them (through :mod:`ttpkit.policy.backends`) before any model loads and
before any progress display starts, so a mistake costs a second, not a minute
of "loading policy":

| backend          | ``--model`` / ``--base-url``   | checked                                                    |
|------------------|--------------------------------|------------------------------------------------------------|
| ``gguf``         | a GGUF file                    | a regular file that starts with the magic ``GGUF``, whose  |
|                  |                                | header and tensor data are whole                           |
| ``hf``           | a model directory              | a directory whose ``config.json`` is a JSON object naming  |
|                  |                                | ``model_type`` or ``architectures`` that transformers can  |
|                  |                                | build, and whose tokenizer and other JSON files are objects|
| ``vllm``         | either of the two              | as above, by what the path is                              |
| ``openai``       | the server's root              | ``http://`` or ``https://``, a host, and a path ending in ``/v1`` |

:func:`check_gguf_file` is the one GGUF check: the 4-byte magic (naming what the
file is instead), then the whole header, naming a torn file. The table of which
backend runs which check is :data:`ttpkit.policy.backends.BACKENDS`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from ttpkit.errors import ConfigError
from ttpkit.policy._gguf_header import GgufFormatError, read_header

__all__ = ["GGUF_MAGIC", "HF_JSON_FILES", "check_base_url", "check_gguf_file", "check_hf_dir", "first_line"]

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (any version)
# the JSON files of a Hugging Face directory that transformers parses before the weights: each must be an object
HF_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                 "added_tokens.json", "model.safetensors.index.json")


def check_gguf_file(path: str | Path) -> Path:
    """``path`` if it is a whole GGUF file: a regular file, the magic, a header whose tensors lie inside the file.

    The magic comes first (a second's work, and a message naming what the file is
    instead); then the header is walked (:func:`ttpkit.policy._gguf_header.read_header`:
    the metadata is skipped, not kept; under a second for Gemma's 262k-token
    vocabulary), so a torn download or a first copy cut short is named here rather
    than failing inside ``gguf`` with ``unpack_from requires a buffer`` or ``cannot
    reshape array``.

    Raises:
        ConfigError: For a missing path, a directory, a file without the GGUF magic, a torn
            header or tensor data, or a GGUF without tensors.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"model {p}: not found")
    if p.is_dir():
        raise ConfigError(f"model {p}: is a directory, not a GGUF file (a Hugging Face model directory takes --backend hf)")
    if not p.is_file():
        raise ConfigError(f"model {p}: not a regular file (a GGUF model file is expected)")
    try:
        with p.open("rb") as f:
            head = f.read(4)
        if head != GGUF_MAGIC:
            raise ConfigError(f"model {p}: not a GGUF file (it starts with {head!r}, the GGUF magic is {GGUF_MAGIC!r})")
        header = read_header(p)
    except OSError as e:
        raise ConfigError(f"model {p}: cannot be read ({e.strerror or e})") from None
    except GgufFormatError as e:
        raise ConfigError(f"model {p}: not a readable GGUF file: {e}") from None
    if not header.tensors:
        raise ConfigError(f"model {p}: a GGUF file without tensors (a vocabulary-only file?), not a model")
    return p


def check_hf_dir(path: str | Path) -> Path:
    """``path`` if it is a Hugging Face model directory whose ``config.json`` names a model type, else one line.

    Raises:
        ConfigError: For a missing path, a file, no or a directory ``config.json``, JSON that is
            not an object, an object with neither ``model_type`` nor ``architectures``, a config
            transformers cannot build (an unknown ``model_type``), or a tokenizer or other JSON file
            (:data:`HF_JSON_FILES`) that is no JSON object; each names the file.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"model {p}: not found")
    if not p.is_dir():
        raise ConfigError(f"model {p}: is a file, not a Hugging Face model directory (a GGUF file takes --backend gguf)")
    config = p / "config.json"
    if not config.is_file():
        raise ConfigError(f"model {p}: not a Hugging Face model directory (no config.json file)")
    raw = _json_object(config, "a model config (a JSON object)")
    if not isinstance(raw.get("model_type"), str) and not raw.get("architectures"):
        raise ConfigError(f"{config}: names neither \"model_type\" nor \"architectures\"; transformers cannot tell the model")
    for name in HF_JSON_FILES:
        if (p / name).exists():
            _json_object(p / name, "a JSON object")
    _transformers_reads(p, config)
    return p


def _json_object(path: Path, what: str) -> dict:
    """The JSON object in ``path``, or one line naming the file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid JSON ({str(e).splitlines()[0][:120]})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not {what}, got a {type(raw).__name__}")
    return raw


def _transformers_reads(p: Path, config: Path) -> None:
    """transformers can build the directory's config (a known ``model_type``, fields of their types), without weights.

    Its errors run to a hundred lines (the list of every model type it knows); the first line is kept.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"  # never the hub: a local directory only
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(p, local_files_only=True)
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as e:
        raise ConfigError(f"{config}: transformers cannot read it ({first_line(e)})") from None


def first_line(e: BaseException) -> str:
    """The first line of a library's error, at most 200 characters (transformers' run to a hundred lines)."""
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)[:200]


def check_base_url(url: str) -> str:
    """``url`` if it is an OpenAI-compatible server's root: ``http(s)://host[:port]/.../v1`` (a trailing ``/`` is allowed).

    Raises:
        ConfigError: Naming ``--base-url``, what is wrong, and the URL to give instead.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("--base-url is empty; give the server's root, e.g. http://127.0.0.1:8000/v1")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        rest = url.strip().split("://", 1)[-1].lstrip("/")
        fixed = _v1("http://" + rest) if parts.scheme not in ("http", "https") else "http://127.0.0.1:8000/v1"
        raise ConfigError(f"--base-url {url}: needs http:// or https:// and a host, e.g. {fixed}")
    if parts.query or parts.fragment:
        raise ConfigError(f"--base-url {url}: the server's root takes no ?query or #fragment, e.g. "
                          f"{parts.scheme}://{parts.netloc}{parts.path}")
    if not parts.path.rstrip("/").endswith("/v1"):
        raise ConfigError(f"--base-url {url}: must end in /v1 (the API's root; ttpkit adds /completions), "
                          f"e.g. {_v1(url.strip())}")
    return url


def _v1(url: str) -> str:
    """``url`` with its path cut at ``/v1`` (or ``/v1`` added)."""
    head, sep, _ = url.rstrip("/").partition("/v1/")
    base = head if sep else url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"
