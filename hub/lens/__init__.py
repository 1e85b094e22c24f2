"""Lenses: read a residual state at layer k as a next-token distribution."""
from hub.lens.base import LogitLens

__all__ = ["LogitLens"]
