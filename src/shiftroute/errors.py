"""One exception tree for shiftroute; foreign exceptions are translated where they arise.

    ShiftrouteError                 every error a user can be shown (message is one clear line)
    ├── ValidationError             a manifest breaks a rule; carries FieldErrors with field paths
    ├── ManifestError               a file is not YAML/JSON or not an object we know
    ├── StoreError                  the store cannot answer
    │   ├── NotFoundError           no such object
    │   ├── AlreadyExistsError      create of an existing name
    │   ├── ConflictError           resourceVersion is stale (compare-and-swap lost)
    │   ├── CompactedError          watch from a revision the store no longer keeps
    │   └── StoreUnavailableError   the backing store is unreachable or corrupt
    ├── PKIError                    a certificate or key cannot be read or made
    └── UsageError                  a command-line value is wrong

Messages never contain key material: callers pass field paths and reasons, never PEM text.
"""

from __future__ import annotations

from dataclasses import dataclass


class ShiftrouteError(Exception):
    """Base of every error shiftroute shows to a user."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One broken rule at one field path, e.g. `spec.tls.key: passthrough does not allow a key`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ValidationError(ShiftrouteError):
    def __init__(self, where: str, errors: list[FieldError]) -> None:
        self.where = where
        self.errors = errors
        lines = "; ".join(str(e) for e in errors)
        super().__init__(f"{where}: {lines}" if where else lines)


class ManifestError(ShiftrouteError):
    pass


class StoreError(ShiftrouteError):
    pass


class NotFoundError(StoreError):
    pass


class AlreadyExistsError(StoreError):
    pass


class ConflictError(StoreError):
    pass


class CompactedError(StoreError):
    def __init__(self, requested: int, compacted: int) -> None:
        self.requested = requested
        self.compacted = compacted
        super().__init__(
            f"revision {requested} was compacted (the store keeps history from revision {compacted + 1}); "
            "list again and watch from the listed revision"
        )


class StoreUnavailableError(StoreError):
    pass


class PKIError(ShiftrouteError):
    pass


class UsageError(ShiftrouteError):
    pass
