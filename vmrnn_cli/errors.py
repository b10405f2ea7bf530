"""The one exception type the CLI turns into a single error line and exit code 1."""


class VmrnnError(Exception):
    """A user-facing failure; its message names the file and what is wrong with it."""
