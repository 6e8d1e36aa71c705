"""The guest's ``helpers`` module under its package name (the top-level ``helpers`` is preferred)."""

from __future__ import annotations

from .pythonpath.helpers import extract_code

__all__ = ("extract_code",)
