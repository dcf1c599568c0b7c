"""Errors for data that is missing or malformed on disk; their messages name the path and the way to fix it."""

from __future__ import annotations

__all__ = ["DatasetFormatError", "DatasetNotFoundError"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or folder is missing; the message names the expected path and how to get the data."""


class DatasetFormatError(ValueError):
    """A dataset file exists but can't be read as the expected format (truncated, foreign, wrong layout)."""
