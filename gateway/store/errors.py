"""Typed failures of the storage layer."""

from __future__ import annotations

import enum


class StoreProblem(enum.Enum):
    UNREACHABLE = "unreachable"
    MIGRATION_FAILED = "migration-failed"
    NOT_FOUND = "not-found"
    CONFLICT = "conflict"
    EXPOSED = "exposed"
    """A SQLite file holding private keys that group or others can read."""


class StoreError(Exception):
    def __init__(self, problem: StoreProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(detail)
