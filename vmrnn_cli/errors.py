"""The exceptions the CLI turns into one error line: data/runtime errors (exit 1) and bad option values (exit 2).

Library messages name options by their Python name in backticks (`overwrite`); the CLI shows them as flags
(--overwrite), so the library speaks of values and the CLI of flags.
"""


class VmrnnError(Exception):
    """A user-facing failure; its message names the file and what is wrong with it."""


class OptionError(VmrnnError):
    """An option value that cannot work (a usage error): `option` is its Python name, e.g. "horizon"."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"`{option}`: {message}")
        self.option = option
        self.detail = message
