"""Package work in a child process: a memory limit, a time limit, a kill on cancel.

Solving, installing, packing and building image layers read what users and
channels send, through native code (rattler) that aborts its whole process on
some bad input (a package whose ``paths.json`` holds an absolute path makes it
panic, then abort). So that work never runs in the serving process or a
worker: :func:`run_isolated` runs one top-level function in a child process
and waits for it, and the cost of a crash is one build.

* The child comes from a fork server (multiprocessing ``forkserver``): a clean,
  single-threaded process started once per process that asks (and again in an
  RQ work process, which is a fork), with the heavy modules preloaded, so a
  child costs a fork, not an interpreter start.
* It runs in a process group of its own under ``RLIMIT_AS``; it dies with the
  process that waits for it (a lifeline pipe), and the waiter kills its group
  on cancel (polled all the time, not only between phases), on the phase's
  wall-clock limit, or when the waiter itself stops.
* Its log lines and steps come back over a pipe to the caller's reporter; its
  result comes back pickled, and a condastore error it raised is raised again
  here as the same type with the same message.
* A death by signal, abort, or out of memory becomes :class:`BuildCrashed`
  (:class:`BuildOutOfMemory`), a phase past its limit :class:`PhaseTimeout`,
  each naming the phase and, from the child's own output, what happened.

Objects that hold native handles (rattler's HTTP client, the channel gate's
proxy) are not sent: the child builds its own from picklable settings.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import re
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from condastore_core.errors import (
    BuildCrashed,
    BuildOutOfMemory,
    CondastoreError,
    PhaseTimeout,
)
from condastore_core.progress import NullReporter, Reporter

if TYPE_CHECKING:
    from condastore_core.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Modules the fork server imports once, so that each child starts with them loaded
#: (``__main__`` too, as multiprocessing does: a child then need not import it again).
PRELOAD = (
    "__main__",
    "condastore_core.isolation",
    "rattler",
    "condastore_core.solve",
    "condastore_core.solver_pool",
    "condastore_core.install",
    "condastore_core.pack",
    "condastore_core.image.builder",
)
#: Preloaded too when this process uses them already (a server, not a build's RQ job).
PRELOAD_IF_USED = ("condastore_core.service.images",)
#: How often the waiter wakes to check for cancellation and the time limit.
POLL_SECONDS = 0.1
#: The tail of a crashed child's output that is searched for its reason.
_OUTPUT_TAIL = 64 * 1024

#: What does the work of each phase, as messages name it.
PHASES = {
    "solve": "the solver",
    "install": "the installer",
    "pack": "conda-pack",
    "layers": "the image layer builder",
}

_SETTING = {
    "solve": "solve_limit_seconds",
    "install": "install_limit_seconds",
    "pack": "pack_limit_seconds",
    "layers": "layer_limit_seconds",
}


@dataclass(frozen=True)
class Limits:
    """What a child may use: address space (MB; 0 is unlimited) and seconds per phase."""

    memory_mb: int = 4096
    solve_seconds: float = 300
    install_seconds: float = 1800
    pack_seconds: float = 1800
    layers_seconds: float = 1800

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            memory_mb=settings.build_memory_limit_mb,
            solve_seconds=settings.solve_limit_seconds,
            install_seconds=settings.install_limit_seconds,
            pack_seconds=settings.pack_limit_seconds,
            layers_seconds=settings.layer_limit_seconds,
        )

    def seconds(self, phase: str) -> float:
        return float(getattr(self, f"{phase}_seconds"))


DEFAULT_LIMITS = Limits()


#: Where package work runs: "child" (a child process, as above) or "inline" (the calling
#: process). Only the local command line, working on its user's own machine for that
#: user alone, asks for "inline": a fork server there costs about a second per command and
#: protects nothing shared. Settings cannot choose it, so servers and workers always isolate.
Isolation = Literal["child", "inline"]


def run_phase(
    isolation: Isolation,
    phase: str,
    limits: Limits,
    fn: Callable[..., T],
    *args: Any,
    reporter: Reporter | None = None,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` as :func:`run_isolated` runs it, or in this process if inline."""
    if isolation == "child":
        return run_isolated(phase, limits, fn, *args, reporter=reporter, **kwargs)
    if isolation != "inline":
        raise ValueError(f"unknown isolation {isolation!r}")
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    if reporter is not None and _takes_reporter(fn):
        kwargs = {**kwargs, "reporter": reporter}
    return fn(*args, **kwargs)


def run_isolated(
    phase: str,
    limits: Limits,
    fn: Callable[..., T],
    *args: Any,
    reporter: Reporter | None = None,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` in a child process under ``limits``; its result.

    ``fn`` and its arguments must pickle (a top-level function, a bound method
    of a picklable object). When ``fn`` takes a ``reporter``, the child's
    reports reach ``reporter`` here; ``reporter.check_canceled`` is polled
    while the child runs, and what it raises (``BuildCanceled``) is raised
    after the child is killed.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    reporter = reporter or NullReporter()
    mp = _context()
    ours, theirs = mp.Pipe(duplex=True)
    fd, output = tempfile.mkstemp(prefix=f"condastore-{phase}-", suffix=".out")
    os.close(fd)
    memory = limits.memory_mb * 1024 * 1024
    child = mp.Process(
        target=_child_main,
        args=(theirs, output, memory, fn, args, kwargs),
        name=f"condastore-{phase}",
        daemon=True,
    )
    watch = _Watch(phase, limits, reporter)
    try:
        child.start()
        theirs.close()
        return watch.wait(child, ours, output)
    finally:
        _kill(child)
        ours.close()
        with contextlib.suppress(OSError):
            os.unlink(output)


class _Watch:
    """The waiting side: forwards reports, enforces limits, explains a child's death."""

    def __init__(self, phase: str, limits: Limits, reporter: Reporter) -> None:
        self.phase = phase
        self.limits = limits
        self.reporter = reporter
        self.seconds = limits.seconds(phase)
        #: What the child last said it was doing (``linking <package>``, ``reading <package>``),
        #: for a crash message.
        self.doing: str | None = None

    def wait(
        self, child: multiprocessing.process.BaseProcess, conn: Connection, output: str
    ) -> Any:
        deadline = time.monotonic() + self.seconds
        while True:
            ready = wait([conn, child.sentinel], timeout=POLL_SECONDS)
            if conn in ready:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    child.join(5)
                    raise self._death(child, output) from None
                done, value = self._handle(message)
                if done:
                    return value
                continue  # drain every report before looking at the child's state
            if child.sentinel in ready:
                raise self._death(child, output)
            self.reporter.check_canceled()
            if time.monotonic() > deadline:
                raise PhaseTimeout(
                    f"{self.phase} exceeded {self.seconds:g} s{self._while()} "
                    f"(setting {_SETTING[self.phase]})",
                    detail={"phase": self.phase, "limit_seconds": self.seconds},
                )

    def _handle(self, message: tuple) -> tuple[bool, Any]:
        kind = message[0]
        if kind == "log":
            text = message[1]
            if text.startswith(("linking ", "reading ")):
                self.doing = text
            self.reporter.log(text)
        elif kind == "step":
            self.reporter.step(*message[1:])
        elif kind == "result":
            return True, message[1]
        elif kind == "error":
            raise _decode_error(message[1])
        elif kind == "oom":
            raise self._out_of_memory()
        return False, None

    def _while(self) -> str:
        return f" while {self.doing}" if self.doing else ""

    def _out_of_memory(self) -> BuildOutOfMemory:
        return BuildOutOfMemory(
            f"{PHASES[self.phase]} ran out of memory{self._while()} "
            f"(limit {self.limits.memory_mb} MB, setting build_memory_limit_mb)",
            detail={"phase": self.phase, "limit_mb": self.limits.memory_mb},
        )

    def _death(self, child: multiprocessing.process.BaseProcess, output: str) -> BuildCrashed:
        child.join(5)
        code = child.exitcode
        text = _tail(output)
        if _ALLOC_FAILED.search(text) or "MemoryError" in text:
            return self._out_of_memory()
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        reason = _reason(text) or how
        return BuildCrashed(
            f"{PHASES[self.phase]} crashed{self._while()}: {reason}",
            detail={"phase": self.phase, "exit": how},
        )


_ALLOC_FAILED = re.compile(r"memory allocation of \d+ bytes failed|Cannot allocate memory")
_PANIC = re.compile(r"panicked at [^\n]*:\n(?P<why>[^\n]+)")


def _reason(text: str) -> str | None:
    """The first panic message of a Rust crash in the child's output, if any."""
    match = _PANIC.search(text)
    if match:
        return match["why"].strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip()[:500] if lines else None


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _OUTPUT_TAIL))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _kill(child: multiprocessing.process.BaseProcess) -> None:
    """SIGKILL the child's process group (it made one of its own) and reap it."""
    pid = child.pid
    if pid is None:
        return
    if child.exitcode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child.join()
    with contextlib.suppress(ValueError):
        child.close()


# -- the child's side ----------------------------------------------------------------


class _PipeReporter:
    """The child's reporter: every report goes to the waiter over the pipe."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def _send(self, message: tuple) -> None:
        with self._lock:
            self._conn.send(message)

    def log(self, message: str) -> None:
        self._send(("log", message))

    def step(self, name: str, current: int = 0, total: int = 0) -> None:
        self._send(("step", name, current, total))

    def check_canceled(self) -> None:
        """The waiter watches for cancellation and kills the child."""


def _child_main(
    conn: Connection,
    output: str,
    memory: int,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict[str, Any],
) -> None:
    os.setsid()  # a group of its own: killed as one, whatever it starts
    fd = os.open(output, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    threading.Thread(target=_lifeline, args=(conn,), daemon=True).start()
    reporter = _PipeReporter(conn)
    try:
        if _takes_reporter(fn):
            kwargs = {**kwargs, "reporter": reporter}
        message: tuple = ("result", fn(*args, **kwargs))
    except MemoryError:
        message = ("oom",)
    except BaseException as exc:
        message = ("error", _encode_error(exc))
    try:
        reporter._send(message)
    except MemoryError:
        reporter._send(("oom",))
    except Exception as exc:  # a result that does not pickle: a bug, told as one
        reporter._send(("error", _encode_error(exc)))


def _lifeline(conn: Connection) -> None:
    """End the child's whole group as soon as the waiting process is gone."""
    try:
        while True:
            conn.recv()
    except (EOFError, OSError):
        pass
    os.killpg(0, signal.SIGKILL)


def _takes_reporter(fn: Callable[..., Any]) -> bool:
    try:
        return "reporter" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _encode_error(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    encoded: dict[str, Any] = {
        "module": cls.__module__,
        "name": cls.__qualname__,
        "message": getattr(exc, "message", None) or str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    if isinstance(exc, CondastoreError):
        encoded["state"] = {k: v for k, v in vars(exc).items() if _picklable(v)}
    elif isinstance(exc, OSError):
        encoded["os"] = (exc.errno, exc.strerror, exc.filename)
    return encoded


def _picklable(value: object) -> bool:
    import pickle

    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def _decode_error(encoded: dict[str, Any]) -> BaseException:
    """The child's exception as the same type here: condastore errors and OSErrors keep theirs."""
    try:
        cls = getattr(importlib.import_module(encoded["module"]), encoded["name"])
    except (ImportError, AttributeError):
        cls = None
    message = encoded["message"]
    if isinstance(cls, type) and issubclass(cls, CondastoreError):
        exc = cls.__new__(cls)
        Exception.__init__(exc, message)
        exc.__dict__.update(encoded.get("state", {}))
        exc.message = message
        return exc
    if isinstance(cls, type) and issubclass(cls, OSError) and "os" in encoded:
        return cls(*encoded["os"])
    logger.error("work in a child process failed:\n%s", encoded["traceback"])
    return BuildCrashed(f"internal error in a child process: {encoded['name']}: {message}")


# -- the fork server ---------------------------------------------------------------


_context_lock = threading.Lock()
_configured = False


def _context() -> multiprocessing.context.ForkServerContext:
    global _configured
    mp = multiprocessing.get_context("forkserver")
    with _context_lock:
        if not _configured:
            used = [name for name in PRELOAD_IF_USED if name in sys.modules]
            mp.set_forkserver_preload([*PRELOAD, *used])
            _configured = True
    return mp


def _forget_fork_server() -> None:
    """In a forked child (an RQ work process), start a fork server of its own when asked.

    The parent's server is not this process's child, so multiprocessing cannot
    watch it from here; its state is dropped (the parent keeps the server).
    """
    server: Any = multiprocessing.forkserver._forkserver  # its private state, as in 3.11+
    server._lock = threading.Lock()
    if server._forkserver_alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(server._forkserver_alive_fd)
    server._forkserver_alive_fd = None
    server._forkserver_pid = None
    server._forkserver_address = None


os.register_at_fork(after_in_child=_forget_fork_server)
