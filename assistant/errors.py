"""The errors a user can hit. The CLI prints each as one line and exits 1."""

from __future__ import annotations


class AssistantError(Exception):
    """Base class: a problem the user can act on, with a one-line message."""


class IndexNotFoundError(AssistantError):
    """No index at the given directory."""


class IndexMismatchError(AssistantError):
    """The index was built with another model, format or settings."""


class IndexCorruptError(AssistantError):
    """An index file is missing, truncated or unreadable."""


class InvalidDocumentError(AssistantError):
    """A corpus file cannot be read (corrupt, binary, empty, bad encoding)."""


class InvalidQuestionSetError(AssistantError):
    """An evaluation question set breaks shared/EVAL-FORMAT.md."""


class BuildInProgressError(AssistantError):
    """Another build of the same index is running."""


class ModelLoadError(AssistantError):
    """The embedding or generator model could not be loaded."""
