"""The project's user-facing errors, in a module that imports nothing of the project (so every layer can raise
them without an import cycle). Sweeps print a `UserError` as one `error:` line and exit 2."""
from __future__ import annotations


class UserError(Exception):
    """Bad input found before any trial starts; sweeps print the message as one line and exit 2."""


class ConfigError(UserError, ValueError):
    """A trial configuration that cannot run; the message is meant for the user as it is."""
