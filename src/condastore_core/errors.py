"""Typed errors of the core library.

The web and registry apps translate these into HTTP answers in one place each;
the CLI prints their message. Every error carries a stable machine ``code``.
"""

from __future__ import annotations


class CondastoreError(Exception):
    """Base of every error the core raises on purpose."""

    code = "ERROR"

    def __init__(self, message: str, *, detail: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConfigError(CondastoreError):
    code = "CONFIG_INVALID"


class SpecError(CondastoreError):
    """An environment spec that cannot be accepted; names the field and line where known."""

    code = "SPEC_INVALID"

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None) -> None:
        where = []
        if line is not None:
            where.append(f"line {line}")
        if field:
            where.append(f"field '{field}'")
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full, detail={"field": field, "line": line})
        self.field = field
        self.line = line


class LockError(CondastoreError):
    """A lockfile that cannot be read or does not describe an installable environment."""

    code = "LOCK_INVALID"


class SolveError(CondastoreError):
    """The solver found no environment; the message is the solver's explanation."""

    code = "SOLVE_FAILED"


class InstallError(CondastoreError):
    code = "INSTALL_FAILED"


class PackError(CondastoreError):
    code = "PACK_FAILED"


class BlobNotFound(CondastoreError):
    code = "BLOB_UNKNOWN"


class DigestMismatch(CondastoreError):
    """Bytes written under a digest did not hash to it."""

    code = "DIGEST_INVALID"


class InvalidDigest(CondastoreError):
    """A string that is not a well-formed ``algorithm:hex`` digest."""

    code = "DIGEST_INVALID"


class NotFound(CondastoreError):
    """A namespace, environment, build or artifact that does not exist (or was deleted)."""

    code = "NOT_FOUND"


class BuildNotFound(NotFound):
    code = "BUILD_UNKNOWN"


class Conflict(CondastoreError):
    """The request contradicts the current state (a name taken, a build not completed)."""

    code = "CONFLICT"


class InvalidRequest(CondastoreError):
    """A request whose shape or values are wrong, independent of any stored state."""

    code = "INVALID_REQUEST"


class BuildCanceled(CondastoreError):
    """Raised inside a build when its cancellation was requested; the build ends CANCELED."""

    code = "BUILD_CANCELED"


class BuildCrashed(CondastoreError):
    """Package work died in its child process (a native crash, an abort); names what it did."""

    code = "BUILD_CRASHED"


class BuildOutOfMemory(BuildCrashed):
    """Package work passed its memory limit (``build_memory_limit_mb``)."""

    code = "BUILD_OUT_OF_MEMORY"


class PhaseTimeout(CondastoreError):
    """A phase of package work (solve, install, pack, layers) passed its time limit."""

    code = "PHASE_TIMEOUT"


class InsufficientStorage(CondastoreError):
    """The data directory is nearly full: new builds are refused until space is freed."""

    code = "INSUFFICIENT_STORAGE"


class TooManyRequests(CondastoreError):
    """Too many failed logins for a user or from an address; retry after ``retry_after`` s."""

    code = "TOO_MANY_REQUESTS"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, detail={"retry_after": retry_after})
        self.retry_after = retry_after
