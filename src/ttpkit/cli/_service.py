"""The service's commands: ``serve`` (the whole HTTP service) and ``export-pool`` (its feedback loop).

Thin floors over :func:`ttpkit.serve.create_service` and
:func:`ttpkit.feedback.export_feedback`; the web stack loads inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ttpkit.cli._common import Device, Dtype, app, check_model_cache, console, friendly, quiet_libraries
from ttpkit.errors import ConfigError

DEFAULT_DB = "sqlite:///profiles.db"


@app.command()
@friendly
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (keep 127.0.0.1 behind a reverse proxy).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=1, max=65_535)] = 8000,
    backend: Annotated[str, typer.Option(help="embedded | gguf | hf.")] = "embedded",
    model: Annotated[Optional[str], typer.Option(help="GGUF file (gguf) or model dir (hf).")] = None,
    task: Annotated[str, typer.Option(help="Task whose labels raw prompts use (/v1/personalize takes its own).")] = "git-commits",
    rm: Annotated[str, typer.Option(help="Reward model of /v1/personalize: 'default' (the task's bundled one), 'default:user-prob', or a model directory.")] = "default",
    db: Annotated[str, typer.Option(help="Profile store URL: sqlite:///profiles.db or postgresql://user@host/db.")] = DEFAULT_DB,
    log_requests: Annotated[bool, typer.Option("--log-requests", help="Keep each personalize answer for /v1/feedback and export-pool.")] = False,
    batch_window_ms: Annotated[float, typer.Option(help="How long a request waits for batch-mates (ms).", min=0)] = 5.0,
    max_batch: Annotated[int, typer.Option(help="Most prompts per decode batch.", min=1, max=4_096)] = 16,
    open_: Annotated[bool, typer.Option("--open", help="Serve without TTPKIT_API_KEY although the store holds issued keys (every route open).")] = False,
    device: Device = "cpu",
    dtype: Dtype = None,
) -> None:
    """Serve TTP over HTTP: profiles, /v1/personalize, per-user keys (TTPKIT_API_KEY), OpenAI-compatible completions."""
    import uvicorn

    from ttpkit.data import get_task
    from ttpkit.device import check_dtype, resolve_device
    from ttpkit.online import check_rm
    from ttpkit.policy import PolicySpec, SamplingConfig, make_policy
    from ttpkit.policy.base import SHIPPED
    from ttpkit.policy.backends import get_backend, names
    from ttpkit.policy.spec import check_backend_options
    from ttpkit.serve._auth import check_open, read_admin_key
    from ttpkit.serve import create_service
    from ttpkit.serve._store import ProfileStore

    if not get_backend(backend).torch:  # the service runs the model in its own process, one decode batch per window
        raise ConfigError(f"serve needs a local torch backend: {names(lambda b: b.torch)}; got {backend!r}")
    read_admin_key()  # a TTPKIT_API_KEY that is not UTF-8 fails now, in one line
    check_backend_options(backend, model, None)
    spec = get_task(task)
    device = resolve_device(device)
    if dtype is not None:
        check_dtype(dtype)  # a bad --dtype fails before the store opens
    PolicySpec.from_options(backend, model, device=device, dtype=dtype).check()  # a model file that is no GGUF, an HF config
    check_rm(rm, spec)  # a bad --rm (its config.json and card.json) fails before the model loads
    _check_port(host, port)  # before the store opens and the model loads
    check_model_cache(backend)
    store = ProfileStore(db)
    store.claim()  # one server per SQLite file: a second is refused here, naming the file (PostgreSQL: replicas share it)
    check_open(store, None, open_)  # before the model loads: an open server over issued keys is refused at once
    quiet_libraries()
    shipped = SamplingConfig(temperature=SHIPPED.temperature, top_p=SHIPPED.top_p)  # what personalize samples with
    policy = make_policy(backend, spec, shipped, model=model, device=device, dtype=dtype)
    app_ = create_service(policy, store, rm=rm, log_requests=log_requests, model_name=policy.name,
                          batch_window_ms=batch_window_ms, max_batch=max_batch, allow_open=open_)
    uvicorn.run(app_, host=host, port=port)


@app.command("export-pool")
@friendly
def export_pool(
    db: Annotated[str, typer.Option(help="Profile store URL (the served --db).")],
    out: Annotated[Path, typer.Option("--out", help="Pool file to write (Parquet).")],
    data_out: Annotated[Optional[Path], typer.Option("--data-out", help="Directory for the pool's data split (default: <out>-data next to it).")] = None,
    task: Annotated[Optional[str], typer.Option(help="Task to export when several are logged.")] = None,
) -> None:
    """Logged requests with feedback -> a labelled pool (ROUGE against the feedback text) for train-rm and diagnose."""
    from ttpkit.paths import check_writable
    from ttpkit.feedback import export_feedback
    from ttpkit.serve._store import ProfileStore

    data_dir = data_out or out.with_name(out.stem + "-data")
    check_writable(out, "--out")
    store = ProfileStore(db)
    queries, rows = export_feedback(store.logged(), out, data_dir, task, where=store.url, manifest={"db": store.shown_url})
    console.print(f"wrote {out} ({queries} queries, {rows} candidates) and its split {data_dir}/train_*.json; next: "
                  f"ttpkit train-rm --pool {out} --data {data_dir} --out rm", soft_wrap=True, highlight=False)


def _check_port(host: str, port: int) -> None:
    """Fail at once when ``host:port`` cannot be bound (busy, or not an address of this machine)."""
    import socket

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host}: cannot resolve it ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); is another server using it? pick --port") from None
