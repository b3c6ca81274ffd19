"""Executors: run module-level functions over plain data here, in a local process pool or on a Dask cluster.

Whatever runs them, results come back in the order of the items, and every task gets exactly the
arguments (and so the seeds) it would get in this process: a run gives the same results on every
executor. The executor is never part of a cache key.

    backend = open_backend("dask://127.0.0.1:8786")     # or "local"
    executor = backend.executor(n_jobs=4, threads=1)    # local: n_jobs processes; Dask: the cluster
    with executor.session(shared=(model, X, y)) as pool:
        scores = pool.map(score_fold, [(0,), (1,), (2,)])   # score_fold(shared, 0), ... in order

A task function must be a module-level (importable) function; `shared` and the items are plain
data. They travel to other processes by the transport's own serialization (multiprocessing's or
Dask's); nothing here reads serialized objects from disk or from anyone but our own workers.
"""

from __future__ import annotations

import multiprocessing
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

from threadpoolctl import threadpool_limits

from keelml.errors import SpecError

T = TypeVar("T")
LOCAL = "local"
DASK_URL = re.compile(r"^dask://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})$")
URL_HELP = "'local' or dask://HOST:PORT (the address of a running Dask scheduler)"
CONNECT_TIMEOUT_S = 20


class _NoShared:
    """Marks a session without shared data (a class: its identity survives a trip to another process)."""


_NOTHING: Any = _NoShared


class Pool(Protocol):
    """An open session: map a function over items, in order."""

    def map(self, fn: Callable[..., T], items: Iterable[Sequence[Any]]) -> list[T]:
        """[fn(shared, *item) for item in items] (fn(*item) without shared data), run by the executor."""


class Executor(Protocol):
    """Where tasks run. `workers`: how many tasks can run at once."""

    kind: str

    @property
    def workers(self) -> int: ...

    def session(self, shared: Any = _NOTHING) -> AbstractContextManager[Pool]:
        """A pool whose tasks all receive `shared` (sent to each worker once) as their first argument."""


def run_all(executor: Executor, fn: Callable[..., T], items: Iterable[Sequence[Any]],
            shared: Any = _NOTHING) -> list[T]:
    """One-off map: open a session, map, close."""
    with executor.session(shared) as pool:
        return pool.map(fn, items)


class _Direct:
    def __init__(self, shared: Any) -> None:
        self._lead = () if shared is _NOTHING else (shared,)

    def map(self, fn: Callable[..., T], items: Iterable[Sequence[Any]]) -> list[T]:
        return [fn(*self._lead, *item) for item in items]


class InProcess:
    """Runs every task here, one after the other (the caller's thread limits apply)."""

    kind = LOCAL
    workers = 1

    @contextmanager
    def session(self, shared: Any = _NOTHING) -> Iterator[Pool]:
        yield _Direct(shared)


_PROCESS: dict[str, Any] = {}  # in each pool process: the session's shared data, set by its initializer


def _init_process(shared: Any, threads: int) -> None:
    threadpool_limits(limits=threads)  # held for the life of the worker process
    _PROCESS["shared"] = shared


def _call_in_process(fn: Callable[..., T], item: Sequence[Any]) -> T:
    shared = _PROCESS["shared"]
    return fn(*item) if shared is _NOTHING else fn(shared, *item)


class _ProcessPool:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def map(self, fn: Callable[..., T], items: Iterable[Sequence[Any]]) -> list[T]:
        result: list[T] = self._pool.starmap(_call_in_process, [(fn, tuple(item)) for item in items])
        return result


class ProcessPool:
    """`n_jobs` fresh interpreters (spawned: no inherited OpenMP state), `threads` native threads each."""

    kind = LOCAL

    def __init__(self, n_jobs: int, threads: int = 1) -> None:
        self.n_jobs, self.threads = n_jobs, threads

    @property
    def workers(self) -> int:
        return self.n_jobs

    @contextmanager
    def session(self, shared: Any = _NOTHING) -> Iterator[Pool]:
        pool = multiprocessing.get_context("spawn").Pool(self.n_jobs, initializer=_init_process,
                                                         initargs=(shared, self.threads))
        try:
            yield _ProcessPool(pool)
        except BaseException:
            pool.terminate()  # Ctrl-C or an error: do not wait for the running tasks
            raise
        finally:
            pool.close()
            pool.join()


def _call_on_worker(threads: int, fn: Callable[..., T], *args: Any) -> T:
    """A task on a Dask worker: the session's thread limit, then the function."""
    with threadpool_limits(limits=threads):
        return fn(*args)


class _DaskPool:
    def __init__(self, client: Any, threads: int, lead: tuple[Any, ...]) -> None:
        self._client, self._threads, self._lead = client, threads, lead

    def map(self, fn: Callable[..., T], items: Iterable[Sequence[Any]]) -> list[T]:
        name = getattr(fn, "__name__", "task")
        futures = [self._client.submit(_call_on_worker, self._threads, fn, *self._lead, *item,
                                       key=f"keel-{name}-{uuid.uuid4().hex}", pure=False) for item in items]
        try:
            results: list[T] = self._client.gather(futures)
        except BaseException:
            self._client.cancel(futures)
            raise
        return results


class DaskExecutor:
    """Tasks run on the workers of a Dask cluster; `threads` native threads per task."""

    kind = "dask"

    def __init__(self, connect: Callable[[], Any], threads: int = 1) -> None:
        self._connect, self.threads = connect, threads

    @property
    def workers(self) -> int:
        return max(1, int(sum(self._connect().nthreads().values())))

    @contextmanager
    def session(self, shared: Any = _NOTHING) -> Iterator[Pool]:
        client = self._connect()
        no_workers = SpecError(
            f"the Dask scheduler at {client.scheduler.address} has no workers",
            expected="at least one `dask worker` connected to the scheduler",
            fix=f"start workers (`dask worker {client.scheduler.address}`), or run with --executor local")
        if not client.nthreads():
            raise no_workers
        lead: tuple[Any, ...] = ()
        if shared is not _NOTHING:
            try:
                lead = (client.scatter(shared, broadcast=True, hash=False),)
            except TimeoutError:  # the workers left between the check and the scatter
                raise no_workers from None
        try:
            yield _DaskPool(client, self.threads, lead)
        finally:
            if lead:
                client.cancel(list(lead))


class Backend:
    """What `executor:` names: hands out executors for a number of local processes; closes what it opened."""

    def __init__(self, url: str = LOCAL, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.url, self.timeout_s = check_url(url), timeout_s
        match = DASK_URL.match(self.url)
        self.address = f"tcp://{match['host']}:{match['port']}" if match else None
        self._client: Any = None

    @property
    def kind(self) -> str:
        return LOCAL if self.address is None else "dask"

    def executor(self, n_jobs: int = 1, threads: int = 1) -> Executor:
        """Local: this process (n_jobs 1) or n_jobs processes. Dask: the cluster, whatever n_jobs says."""
        if self.address is not None:
            return DaskExecutor(self.client, threads)
        return InProcess() if n_jobs <= 1 else ProcessPool(n_jobs, threads)

    def client(self) -> Any:
        """The Dask client, connected on first use (a fully cached run never connects)."""
        if self._client is None:
            try:
                from distributed import Client  # dask: optional extra, only for a dask:// executor
            except ImportError:
                raise SpecError(f"executor {self.url} needs Dask, which is not installed",
                                expected="the dask extra installed", fix="pip install 'keelml[dask]'") from None
            try:
                self._client = Client(  # type: ignore[no-untyped-call]
                    self.address, timeout=self.timeout_s, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise SpecError(f"cannot reach the Dask scheduler at {self.url}: {type(exc).__name__}",
                                expected="a running Dask scheduler at that address, with workers",
                                fix=f"start one (dask scheduler; dask worker {self.address}) or use "
                                    "--executor local") from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_url(url: str) -> str:
    """The executor URL as given, or a SpecError saying what is accepted."""
    text = url.strip()
    if text == LOCAL or DASK_URL.match(text):
        return text
    raise SpecError(f"unknown executor {url!r}", expected=URL_HELP,
                    fix="write executor: local, or executor: dask://127.0.0.1:8786 for a scheduler on this machine")


def open_backend(url: str | None = None) -> Backend:
    """The backend for an executor URL (None: local)."""
    return Backend(url or LOCAL)
