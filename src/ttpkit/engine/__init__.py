"""Engines: where the sampling and scoring stages run, ``local`` (this process) or ``ray`` (actors on a Ray cluster).

The stages take an :class:`Engine` (``stages.sample_pool(..., engine=Engine("ray"))``;
the CLI's ``--engine``, ``--address``, ``--actors``, ``--actor-cpus``, ``--actor-gpus``).
An engine maps batches to workers and hands the results back in the driver,
where the stage's one writer writes them; ``local`` is the default and does
exactly what the stages did before engines existed.

| module    | holds                                                                               |
|-----------|-------------------------------------------------------------------------------------|
| ``_base`` | :class:`Engine` (kind, Ray address, actor count and resources), :data:`ENGINES`,    |
|           | :data:`LOCAL`                                                                       |
| ``_local``| sampling in this process, batch after batch; :func:`batches` (the one place a run's |
|           | queries are cut, for either engine)                                                 |
| ``_ray``  | actors that load the model once, restarts and retries, the driver-side cache merge  |
|           | (imported only when a Ray engine runs: ``import ttpkit`` never imports ray)         |
"""

from __future__ import annotations

from ttpkit.engine._base import ENGINES, LOCAL, Engine
from ttpkit.engine._local import batches

__all__ = ["ENGINES", "LOCAL", "Engine", "batches"]
