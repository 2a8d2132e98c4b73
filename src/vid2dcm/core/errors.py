"""One exception hierarchy; each class carries the CLI exit code a script can branch on."""

from __future__ import annotations


class Vid2DcmError(Exception):
    """Base of every error vid2dcm raises on purpose; the message is meant for a person."""

    exit_code = 1


class UsageError(Vid2DcmError):
    """The request itself is inconsistent (bad option combination, bad metadata file)."""

    exit_code = 2


class InputError(Vid2DcmError):
    """The input cannot be read, or holds nothing vid2dcm can turn into video."""

    exit_code = 3


class NotStorableError(Vid2DcmError):
    """The video is readable but cannot be stored as DICOM without transcoding."""

    exit_code = 4

    def __init__(self, message: str, rules: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.rules = rules


class OutputError(Vid2DcmError):
    """Writing, reading back or validating an output failed."""

    exit_code = 5


class DeliveryError(Vid2DcmError):
    """The destination could not be reached, or refused what was sent."""

    exit_code = 6


class ServiceError(Vid2DcmError):
    """A long-running service (gateway server, worker) could not start: its port is taken, its
    data folder is not writable or holds files this version cannot use."""

    exit_code = 7
