"""The errors of a search configuration, in a module that imports nothing.

:mod:`primer_search.search.config` raises them and re-exports them; the command line
catches them without importing that module, whose imports reach the primitives and JAX
(``top`` and ``show`` load no JAX).
"""

from __future__ import annotations

__all__ = ["ConfigError", "ResumeError"]


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names it."""


class ResumeError(ConfigError):
    """A resume that the store's rules refuse (a change it does not allow, a store of
    an earlier version): the command was well formed, the store says no."""
