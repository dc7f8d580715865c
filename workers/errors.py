"""TickDesk's exception tree: the class of an error says what to do about it.

Outside data is converted into one of these where it comes in (a socket, a file, a flag), so
the loop that catches it can decide by class alone, in one place::

    TickDeskError
    ├── RetryableError     try again later: the same request may well succeed
    │   ├── PeerTimeout        no reply within the timeout (Lazy Pirate gave up)
    │   └── PeerUnreachable    cannot connect / send to a peer right now
    ├── FatalError         stop: retrying cannot help, a person must act
    │   ├── ConfigError        bad option, endpoint refused, bad TOML (exit code 2)
    │   └── CorruptStateError  a journal or snapshot that fails its own checks
    ├── ProtocolError      bad input from a peer: count it, drop it, log it (rate-limited),
    │                      never fatal, never retried (the same bytes stay bad)
    └── CommandError       a supervisor command that cannot be carried out; its text goes
                           back to the supervisor, and the worker carries on

ProtocolError and ConfigError also subclass ValueError, so code that caught ValueError
around parsing keeps working while it moves to the precise class.
"""

from __future__ import annotations


class TickDeskError(Exception):
    """Base of every error TickDesk raises on purpose."""


class RetryableError(TickDeskError):
    """A temporary failure: the same operation may succeed if tried again."""


class PeerTimeout(RetryableError):
    """A peer did not answer in time."""


class PeerUnreachable(RetryableError):
    """A peer cannot be reached now (not connected, queue full)."""


class FatalError(TickDeskError):
    """Retrying cannot help: stop the operation (or the process) and say why."""


class ConfigError(FatalError, ValueError):
    """A configuration that cannot work; the worker reports it and exits with status 2."""


class CorruptStateError(FatalError):
    """Persistent state that fails its own checks: refused, never served."""


class ProtocolError(TickDeskError, ValueError):
    """Input from a peer that does not follow the protocol; the message says what is wrong."""


class CommandError(TickDeskError):
    """A command from the supervisor that cannot be carried out; the text goes back to it."""


def is_retryable(exc: BaseException) -> bool:
    """Should the operation that raised ``exc`` be tried again?  Only for RetryableError:
    anything else (a bug included) is not made to go away by repeating it."""
    return isinstance(exc, RetryableError)


__all__ = [
    "CommandError",
    "ConfigError",
    "CorruptStateError",
    "FatalError",
    "PeerTimeout",
    "PeerUnreachable",
    "ProtocolError",
    "RetryableError",
    "TickDeskError",
    "is_retryable",
]
