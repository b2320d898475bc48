"""The base class of every error a user can cause and fix.

A ``UserError`` is bad input, a bad option, a missing or foreign file: the CLI
prints its message as one line and exits with status 1, never a traceback.
Each module keeps its own subclass (``ConfigError``, ``DataError``, ...) so a
caller can tell them apart; programming errors stay ordinary exceptions.
"""


class UserError(Exception):
    """Something the user asked for or gave cannot work; the message says what to do."""
