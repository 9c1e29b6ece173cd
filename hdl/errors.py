"""Errors caused by the user's input: the CLI prints them without a traceback and exits 2."""


class UserError(Exception):
    """Bad input (a path, a key, a value) with a message that names it and the fix."""
