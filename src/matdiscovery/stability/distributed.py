"""Sharded, resumable maps over structures on Dask distributed (the judge/relax screens).

Design
------
- **Engine.** Work runs through a :class:`distributed.Client`. :func:`dask_client` gives one: to
  an explicit scheduler address, else to ``$MATDISCOVERY_DASK_SCHEDULER``, else to a new
  :class:`distributed.LocalCluster` of ``n_workers`` processes with ``threads_per_worker``
  threads each (default: two one-thread processes, the two cores of the development machine),
  no dashboard, quiet logs, and torch / OpenMP / MKL at ``threads_per_worker`` threads in each
  worker. The same calling code therefore runs on a laptop or a cluster.
- **Memory allocator.** Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand
  freed memory back to the OS). Setting that variable switches off glibc's adaptive mmap
  threshold, so every tensor above 128 kB is mmap-ed and unmapped again: in the relax screen the
  workers spent 41 % of their CPU time in the kernel (300 million page faults in 31 CPU-minutes).
  :func:`dask_client` drops the variable for its local workers (``pre-spawn-environ`` override);
  workers you start yourself should not set it either.
- **Shards.** :func:`map_shards` cuts the items into consecutive shards of ``shard_size`` and
  submits ``fn(shard)`` per shard (a top-level, picklable function returning one DataFrame row
  per item). At most a few shards per worker thread are in flight at once, so a million-item
  screen does not push every item into the scheduler up front.
- **Keys.** A shard's result file is ``cache_dir/{key}-{i:05d}-of-{n:05d}.pkl``. ``key`` names
  *what* was computed: build it with :func:`shard_key` from everything the results depend on
  (parameters, code/model version strings, and a content hash of the items, e.g.
  :func:`matdiscovery.stability.chgnet_judge.structure_fingerprint`). Change any of them and the
  key changes, so stale results are never reused; the shard count is in the name too, so a
  different ``shard_size`` never mixes files.
- **Resume.** Each result is written by the client process as soon as its shard finishes
  (``as_completed``), atomically (temporary name, then :func:`os.replace`), so a file either
  holds a whole shard or does not exist. A rerun with the same key reuses the files and
  computes only missing shards: a crashed or interrupted screen resumes where it stopped. A
  failing shard does not stop the others; the error (naming the shard) is raised after all of
  them have finished and been written. Files are written where the *client* runs, so workers
  need no shared file system.

Running on a real cluster
-------------------------
On one machine start a scheduler, on each compute machine workers (one thread per process for
torch code; set the thread variables too)::

    dask scheduler                                   # prints tcp://HOST:8786
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 dask worker tcp://HOST:8786 --nworkers 64 --nthreads 1

Every worker needs this package (``pip install -e .``) and the same model weights. Then point
the screen at the scheduler, either with ``export MATDISCOVERY_DASK_SCHEDULER=tcp://HOST:8786``
or with the ``dask_scheduler`` key in ``params.yaml`` (passed as ``address``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pandas as pd
from distributed import Client, LocalCluster, as_completed
from distributed.diagnostics.plugin import WorkerPlugin

SCHEDULER_ENV = "MATDISCOVERY_DASK_SCHEDULER"

_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class ShardError(RuntimeError):
    """One or more shards of :func:`map_shards` failed (the others were computed and written)."""


class TorchThreads(WorkerPlugin):
    """Sets torch's intra-op thread count (and the OpenMP/MKL variables) in each worker process, and
    silences ``UserWarning`` there: a worker's warnings go to the parent's raw stderr, which a
    notebook kernel forwards into the report, once per worker and structure."""

    name = "matdiscovery-torch-threads"

    def __init__(self, n: int):
        self.n = int(n)

    def setup(self, worker) -> None:
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", message="logm result may be inaccurate")  # ASE's cell filter
        for var in _THREAD_ENV:
            os.environ[var] = str(self.n)
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return
        torch.set_num_threads(self.n)


@contextmanager
def dask_client(address: str | None = None, *, n_workers: int = 2, threads_per_worker: int = 1) -> Iterator:
    """Yield a :class:`distributed.Client`: to ``address`` if given, else to
    ``$MATDISCOVERY_DASK_SCHEDULER`` if set, else to a new :class:`distributed.LocalCluster` of
    ``n_workers`` processes × ``threads_per_worker`` threads (no dashboard, quiet logs, torch and
    OpenMP/MKL at ``threads_per_worker`` threads per worker), closed on exit.

    With an address the client is closed on exit but the cluster is left running (it is not
    ours); its workers' thread settings are the cluster operator's (see the module docstring).
    """
    address = address or os.environ.get(SCHEDULER_ENV) or None
    if address:
        client = Client(address, timeout="30s")
        try:
            yield client
        finally:
            client.close()
        return
    if int(n_workers) < 1 or int(threads_per_worker) < 1:
        raise ValueError(f"need n_workers ≥ 1 and threads_per_worker ≥ 1; got {n_workers}, {threads_per_worker}")
    import dask

    env = {var: str(threads_per_worker) for var in _THREAD_ENV}
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):  # see module docstring
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR, env=env)
    try:
        client = Client(cluster)
        try:
            client.register_plugin(TorchThreads(threads_per_worker))
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def shard_key(*parts) -> str:
    """A short stable hash (16 hex characters) of JSON-able ``parts`` (parameters, code/model
    version strings, per-item content hashes) naming a shard's result files."""
    try:
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except TypeError as exc:
        raise TypeError(f"shard_key parts must be JSON-able (str, numbers, lists, dicts): {exc}") from None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        frame.to_pickle(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read_shard(path: Path, n_items: int) -> pd.DataFrame | None:
    """A stored shard, or None when it is missing or unreadable (then it is recomputed)."""
    if not path.exists():
        return None
    try:
        frame = pd.read_pickle(path)
    except Exception:  # noqa: BLE001 - a damaged file is recomputed, not fatal
        return None
    if not isinstance(frame, pd.DataFrame) or len(frame) != n_items:
        raise ValueError(f"{path} holds {len(frame) if isinstance(frame, pd.DataFrame) else type(frame).__name__} "
                         f"rows for a shard of {n_items} items: the key does not name what was computed")
    return frame


def map_shards(fn: Callable[[list], pd.DataFrame], items: Sequence, *, shard_size: int, cache_dir: str | Path,
               key: str, client, progress: bool = True, desc: str = "shards", on_error: str = "raise") -> pd.DataFrame:
    """Run ``fn(shard_items)`` on the Dask ``client`` for consecutive shards of ``shard_size``
    ``items`` and return the shards' frames concatenated in item order (``ignore_index``).

    A shard's result is stored in ``cache_dir/{key}-{i:05d}-of-{n:05d}.pkl`` as soon as it arrives
    (atomically) and reused when the file exists, so a rerun computes only what is missing.
    ``fn`` must be a top-level (picklable) function returning one row per item. The result has
    ``attrs["shards_computed"]`` and ``attrs["shards_reused"]``. Failing shards raise
    :class:`ShardError` (naming each shard and its exception) after all others finished and were
    written. With ``on_error="skip"`` a failed shard is recorded instead, in
    ``cache_dir/{key}-{i:05d}-of-{n:05d}.failed`` (the error text; a rerun does not retry it, delete the
    file to retry: a shard that kills its workers, e.g. out of memory, would kill them again), its items
    are left out of the result, and ``attrs["failed_items"]`` maps each left-out item's position to the error.
    """
    from matdiscovery.progress import progress_bar

    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be an integer ≥ 1, got {shard_size!r}")
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"key must be a non-empty file-name-safe string ([A-Za-z0-9_.-]), got {key!r}")
    if client is None:
        raise ValueError("client is None; get one from dask_client()")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    items = list(items)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    shards = [items[i:i + shard_size] for i in range(0, len(items), shard_size)]
    n = len(shards)
    paths = [cache_dir / f"{key}-{i:05d}-of-{n:05d}.pkl" for i in range(n)]
    frames: list[pd.DataFrame | None] = [_read_shard(p, len(s)) for p, s in zip(paths, shards)]
    errors: dict[int, BaseException] = {}
    if on_error == "skip":  # failures recorded by an earlier run are not retried
        for i, path in enumerate(paths):
            if frames[i] is None and path.with_suffix(".failed").exists():
                errors[i] = RuntimeError(path.with_suffix(".failed").read_text().strip())
    todo = [i for i, f in enumerate(frames) if f is None and i not in errors]
    reused = n - len(todo) - len(errors)

    bar = progress_bar(total=n, desc=desc, progress=progress, leave=False, initial=reused)
    window = max(4, 2 * sum(client.nthreads().values()))  # shards in flight: keep workers busy, not flooded
    pending = iter(todo)
    index = {}

    def submit_next(queue) -> None:
        i = next(pending, None)
        if i is not None:
            fut = client.submit(fn, shards[i], pure=False)
            index[fut.key] = i
            queue.add(fut)

    queue = as_completed()
    try:
        for _ in range(min(window, len(todo))):
            submit_next(queue)
        for fut in queue:
            i = index.pop(fut.key)
            try:
                frame = fut.result()
                if not isinstance(frame, pd.DataFrame):
                    raise TypeError(f"fn returned a {type(frame).__name__}, not a pandas DataFrame")
                if len(frame) != len(shards[i]):
                    raise ValueError(f"fn returned {len(frame)} rows for {len(shards[i])} items")
                _write_atomic(frame, paths[i])
                frames[i] = frame
            except Exception as exc:  # noqa: BLE001 - collected, raised after the other shards
                errors[i] = exc
                if on_error == "skip":
                    paths[i].with_suffix(".failed").write_text(f"{type(exc).__name__}: {exc}\n")
            finally:
                fut.release()
            bar.update(1)
            submit_next(queue)
    except BaseException:
        client.cancel(list(queue.futures))  # interrupted: stop the rest; written shards stay
        raise
    finally:
        bar.close()

    if errors and on_error == "raise":
        lines = [f"shard {i} ({paths[i].name}, items {i * shard_size}..{i * shard_size + len(shards[i]) - 1}): "
                 f"{type(e).__name__}: {e}" for i, e in sorted(errors.items())]
        raise ShardError(f"{len(errors)} of {n} shards failed ({n - len(errors)} stored in {cache_dir}; "
                         "a rerun computes only the failed ones):\n  " + "\n  ".join(lines)) from errors[min(errors)]
    kept = [f for f in frames if f is not None]
    out = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    out.attrs["shards_computed"] = len(todo) - sum(i in errors for i in todo)
    out.attrs["shards_reused"] = reused
    if on_error == "skip":
        out.attrs["failed_items"] = {k: f"{type(e).__name__}: {e}" for i, e in sorted(errors.items())
                                     for k in range(i * shard_size, i * shard_size + len(shards[i]))}
    return out
