"""Project exceptions: one base class so callers can catch everything darknet_torch raises on bad input."""


class DarknetError(Exception):
    """Base class for every error caused by a user's files or arguments."""


class CfgError(DarknetError):
    """A .cfg / .data / .names file is malformed; the message names the file, line, section and key."""


class WeightsError(DarknetError):
    """A .weights file does not match the network (too short, too long, wrong header)."""


class DataError(DarknetError):
    """An image, label or list file cannot be used; the message names the path (and line)."""


class UnsupportedCfgError(CfgError):
    """A valid Darknet cfg uses something darknet_torch refuses to build; ``reason`` names what (e.g. ``"lstm"``,
    ``"xnor"``, ``"tree"``), the message says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


#: Longest piece of a user's file quoted in a message; a binary file given as a cfg must not flood the terminal.
QUOTE_LIMIT = 60


def clipped(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, with ``...`` when it was longer (names in ``file:line [section] key``)."""
    return text if len(text) <= limit else f"{text[:limit]}..."


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``repr(text)`` for an error message, cut to ``limit`` characters with an ellipsis and the full length."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
