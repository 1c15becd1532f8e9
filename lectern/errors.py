"""The project's errors. The API maps these classes to HTTP codes in one handler."""

from __future__ import annotations


class LecternError(Exception):
    """Base of every error Lectern raises on purpose."""


class ConfigError(LecternError):
    """A setting holds a value Lectern cannot use."""


class DataFileError(LecternError, ValueError):
    """A training or evaluation data file is not in the format it claims to be."""


class ModelNotFoundError(LecternError):
    """No model could be resolved from a reference; the message lists what was tried."""

    def __init__(self, ref: str, tried: list[str]) -> None:
        self.ref = ref
        self.tried = tried
        lines = "\n".join(f"  - {t}" for t in tried)
        super().__init__(f"model {ref!r} could not be found; tried:\n{lines}")


class ChecksumMismatchError(LecternError):
    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(f"sha256 of {path} is {actual}, expected {expected}")


class NotReadyError(LecternError):
    """A component was used before its warm_up()."""


class UnauthorizedError(LecternError):
    """A missing or wrong admin token."""


class RetryLaterError(LecternError):
    """Refused for now; `retry_after_s` (whole seconds, at least 1) says when to try again."""

    def __init__(self, retry_after: float, reason: str) -> None:
        self.retry_after = retry_after
        super().__init__(f"{reason}; retry in {self.retry_after_s} s")

    @property
    def retry_after_s(self) -> int:
        return max(1, round(self.retry_after))


class RateLimitedError(RetryLaterError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after, "too many requests")


class OverloadedError(RetryLaterError):
    """The server is at capacity; the request was refused before any work was done on it."""

    def __init__(self, retry_after: float, reason: str = "the server is at capacity") -> None:
        super().__init__(retry_after, reason)


class InvalidRequestError(LecternError):
    """A request outside a limit the API sets (too many files, ...)."""


class AdapterMismatchError(InvalidRequestError):
    """A generator adapter that does not fit the base model; refused before it is merged."""

    def __init__(self, adapter: str, base: str, reason: str) -> None:
        self.adapter = adapter
        self.base = base
        self.reason = reason
        super().__init__(f"adapter {adapter} does not fit the base model {base}: {reason}")


class CalibrationRunningError(LecternError):
    """A calibration was asked for while another one runs."""


class AdapterNotFoundError(LecternError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listed = ", ".join(repr(k) for k in known) or "none"
        super().__init__(
            f"no adapter named {name!r}; available: {listed} (null serves the base model)"
        )


class RequestTooLargeError(LecternError):
    """A request body over the limit for its route, refused before (or while) it is read."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        mib = limit_bytes >= 2**20
        size = f"{limit_bytes / 2**20:.1f} MiB" if mib else f"{limit_bytes / 2**10:.1f} KiB"
        super().__init__(f"the request body is over the {size} limit")


class DocumentNotFoundError(LecternError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no document with id or source {key!r}")


class AnswerNotFoundError(LecternError):
    """No logged answer has this id (never given, or deleted by the retention)."""


class ConversationNotFoundError(LecternError):
    """No kept conversation has this id (never started here, expired, or dropped)."""


class IngestError(LecternError):
    """A file could not be ingested. The rest of its batch is unaffected."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self) -> tuple[type[IngestError], tuple[str, str]]:
        # Raised in the parse worker process and re-raised here: pickled by its fields.
        return type(self), (self.path, self.reason)


class UnsupportedFileTypeError(IngestError):
    pass


class EmptyFileError(IngestError):
    pass


class CorruptFileError(IngestError):
    pass


class FileTooLargeError(IngestError):
    pass


class ParseLimitError(FileTooLargeError):
    """A file within the size limit that would expand past a parse cap (a zip bomb, ...)."""


class ParseTimeoutError(IngestError):
    """A file's parse ran past ingest.parse_timeout_s; its worker process was killed."""


class IngestCancelledError(IngestError):
    """The service closed (the server is shutting down) while the file was ingested."""


class MissingExtraError(LecternError, ImportError):
    """An optional dependency is not installed; the message names what to install."""

    def __init__(self, module: str, install: str) -> None:
        self.module = module
        self.install = install
        super().__init__(f"{module} is not installed; install it with: {install}")

    def __reduce__(self) -> tuple[type[MissingExtraError], tuple[str, str]]:
        return type(self), (self.module, self.install)  # as IngestError's, for parse workers
