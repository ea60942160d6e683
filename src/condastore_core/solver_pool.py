"""Long-lived solver children that keep rattler's repodata warm, recycled before they grow.

A rattler ``Gateway`` keeps every record it ever loaded: in a serving process
it grows without bound with the variety of solves, and a fresh child per
solve (:func:`~condastore_core.isolation.run_isolated`) re-parses the
channels' disk cache every time. A :class:`SolverPool` keeps a few children
(one by default) that each hold one :class:`~condastore_core.solve.Solver`
across solves and package searches, so a warm solve costs what it costs in
process, while the serving process never loads repodata itself:

* a child is recycled after ``solver_max_solves`` calls, or when its resident
  memory, measured by the child after each call, passes ``solver_max_rss_mb``;
* it runs under the same limits as any isolated child (``RLIMIT_AS``, the
  solve's wall-clock limit, a process group of its own, a lifeline to this
  process), and a crash, timeout or cancel kills it and fails that call only,
  with the same typed errors (``BuildCrashed``, ``PhaseTimeout``...); the next
  call starts a new child;
* freshness rules apply in the child before each call (the solver's own
  ``Freshness``, whose record every process shares), so a channel refreshed
  by any process is read again here too.

A pool belongs to the process that made it: a forked process (an RQ work
horse, one per job) starts its own children on first use.
"""

from __future__ import annotations

import contextlib
import os
import queue
import resource
import signal
import tempfile
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, TypeVar

from condastore_core.isolation import (
    POLL_SECONDS,
    Limits,
    _context,
    _encode_error,
    _kill,
    _PipeReporter,
    _takes_reporter,
    _Watch,
)
from condastore_core.progress import NullReporter, Reporter

if TYPE_CHECKING:
    import multiprocessing.process

    from condastore_core.channels import ChannelGate
    from condastore_core.lock import Lock
    from condastore_core.solve import PackageSummary, Solver
    from condastore_core.spec import EnvironmentSpec

T = TypeVar("T")


class SolverPool:
    """``size`` solver children shared by the threads of one process."""

    def __init__(
        self,
        solver: Solver,
        limits: Limits,
        *,
        size: int = 1,
        max_solves: int = 50,
        max_rss_mb: int = 2048,
    ) -> None:
        self.solver = solver
        self.limits = limits
        self.size = max(1, size)
        self.max_solves = max(1, max_solves)
        self.max_rss_mb = max_rss_mb
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._free: queue.Queue[SolverChild] = queue.Queue()
        self._all: list[SolverChild] = []
        self._fill()

    def _fill(self) -> None:
        self._all = [SolverChild(self) for _ in range(self.size)]
        self._free = queue.Queue()
        for child in self._all:
            self._free.put(child)

    def solve(
        self,
        spec: EnvironmentSpec,
        platforms: Sequence[str] | None = None,
        *,
        gate: ChannelGate | None = None,
        reporter: Reporter | None = None,
    ) -> Lock:
        """Lock ``spec`` in a solver child (see :meth:`Solver.solve`)."""
        return self.run(
            _solve, spec, list(platforms) if platforms else None, gate, reporter=reporter
        )

    def search(
        self,
        query: str,
        channels: Sequence[str],
        platforms: Sequence[str],
        limit: int = 50,
        *,
        gate: ChannelGate | None = None,
    ) -> list[PackageSummary]:
        """Packages whose name contains ``query`` (see :func:`solve.search_packages`)."""
        from condastore_core.solve import search_packages

        return self.run(search_packages, query, list(channels), list(platforms), limit, gate=gate)

    def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        reporter: Reporter | None = None,
        **kwargs: Any,
    ) -> T:
        """``fn(solver, *args, **kwargs)`` in a free child; waits for one (and for cancel)."""
        reporter = reporter or NullReporter()
        child = self._acquire(reporter)
        try:
            return child.call(fn, args, kwargs, reporter)
        finally:
            self._free.put(child)

    def _acquire(self, reporter: Reporter) -> SolverChild:
        with self._lock:
            if os.getpid() != self._pid:  # forked: the children are the parent's
                for child in self._all:
                    child.forget()
                self._pid = os.getpid()
                self._fill()
        while True:
            reporter.check_canceled()
            try:
                return self._free.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue

    def pids(self) -> list[int]:
        """The process ids of the running children (for tests and diagnostics)."""
        return [c.pid for c in self._all if c.pid is not None]

    def close(self) -> None:
        """Stop every child (they also die on their own when this process ends)."""
        for child in self._all:
            child.stop()


class SolverChild:
    """One long-lived solver process, started on first use and after each recycle."""

    def __init__(self, pool: SolverPool) -> None:
        self.pool = pool
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.lifeline: Connection | None = None
        self.output: str | None = None
        #: Calls answered since it started.
        self.calls = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _start(self) -> None:
        mp = _context()
        ours, theirs = mp.Pipe(duplex=True)
        life_theirs, life_ours = mp.Pipe(duplex=False)
        fd, self.output = tempfile.mkstemp(prefix="condastore-solver-", suffix=".out")
        os.close(fd)
        memory = self.pool.limits.memory_mb * 1024 * 1024
        self.process = mp.Process(
            target=_serve,
            args=(theirs, life_theirs, self.output, memory, self.pool.solver),
            name="condastore-solver",
            daemon=True,
        )
        self.process.start()
        theirs.close()
        life_theirs.close()
        self.conn, self.lifeline = ours, life_ours
        self.calls = 0

    def call(
        self, fn: Callable[..., T], args: tuple, kwargs: dict[str, Any], reporter: Reporter
    ) -> T:
        if self.process is None or not self.process.is_alive():
            self.stop()
            self._start()
        assert self.process is not None and self.conn is not None and self.output is not None
        with contextlib.suppress(OSError):
            os.truncate(self.output, 0)  # a crash is explained by this call's output only
        watch = _PoolWatch("solve", self.pool.limits, reporter)
        try:
            self.conn.send((fn, args, kwargs))
            result = watch.wait(self.process, self.conn, self.output)
        except BaseException:
            if not watch.answered:
                self.stop()
            raise
        finally:
            self._after(watch)
        return result

    def _after(self, watch: _PoolWatch) -> None:
        """Recycle the child once it has answered enough calls or grown past the cap."""
        if not watch.answered:
            return
        self.calls += 1
        cap = self.pool.max_rss_mb * 1024 * 1024
        if self.calls >= self.pool.max_solves or (cap > 0 and watch.rss > cap):
            self.stop()

    def stop(self) -> None:
        """Kill the child's group and forget it; the next call starts another."""
        if self.process is not None:
            _kill(self.process)
        for conn in (self.conn, self.lifeline):
            if conn is not None:
                conn.close()
        if self.output is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.output)
        self.process = self.conn = self.lifeline = self.output = None

    def forget(self) -> None:
        """In a forked process: drop the parent's child without touching it."""
        for conn in (self.conn, self.lifeline):
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
        self.process = self.conn = self.lifeline = self.output = None


class _PoolWatch(_Watch):
    """The waiting side of one call; notes whether the child answered, and its size."""

    answered = False
    rss = 0

    def _handle(self, message: tuple) -> tuple[bool, Any]:
        kind = message[0]
        if kind == "rss":
            self.rss = message[1]
            return False, None
        if kind in ("result", "error"):
            self.answered = True
        return super()._handle(message)


def _solve(
    solver: Solver,
    spec: EnvironmentSpec,
    platforms: list[str] | None,
    gate: ChannelGate | None,
) -> Lock:
    return solver.solve(spec, platforms, gate=gate)


# -- the child's side ----------------------------------------------------------------


def _serve(
    conn: Connection, lifeline: Connection, output: str, memory: int, solver: Solver
) -> None:
    """Answer calls with one solver until the pool closes the pipe."""
    os.setsid()
    fd = os.open(output, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    threading.Thread(target=_lifeline, args=(lifeline,), daemon=True).start()
    reporter = _PipeReporter(conn)
    while True:
        try:
            fn, args, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if _takes_reporter(fn):
                kwargs = {**kwargs, "reporter": reporter}
            message: tuple = ("result", fn(solver, *args, **kwargs))
        except MemoryError:
            message = ("oom",)
        except BaseException as exc:
            message = ("error", _encode_error(exc))
        try:
            reporter._send(("rss", _rss_bytes()))
            reporter._send(message)
        except MemoryError:
            reporter._send(("oom",))
        except (EOFError, OSError):
            return
        except Exception as exc:  # a result that does not pickle: a bug, told as one
            reporter._send(("error", _encode_error(exc)))


def _lifeline(conn: Connection) -> None:
    """End the child's whole group as soon as the pool's process is gone."""
    with contextlib.suppress(EOFError, OSError):
        conn.recv()
    os.killpg(0, signal.SIGKILL)


def _rss_bytes() -> int:
    """This process's resident memory now (not its peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
