"""One exception type for every mistake a user can fix: its message names the file or config key and the fix."""


class CatdogError(Exception):
    """A user-facing error; entry points print its message alone, without a traceback."""
