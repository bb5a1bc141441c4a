"""Exceptions raised by :mod:`advlib.data`."""


class DataUnavailableError(RuntimeError):
    """No source could provide the data set; the message says what to do."""


class ChecksumError(DataUnavailableError, ValueError):
    """A file's SHA-256 differs from the expected value (so the data is not usable)."""

    def __init__(self, name: str, expected: str, actual: str, origin: str = ""):
        self.name, self.expected, self.actual = name, expected, actual
        where = f" from {origin}" if origin else ""
        super().__init__(
            f"checksum mismatch for {name}{where}: expected SHA-256 {expected}, got {actual}"
        )
