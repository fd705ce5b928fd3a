"""Errors of the frozen-images tool; ``cli`` maps them to exit statuses.

Usage problems (a bad reference, platform or option) raise ``dind.errors.UsageError``
(exit 2); everything here means the download failed (exit 1).
"""

from __future__ import annotations

from dind import errors
from dind.errors import DindError


def printable(text: str) -> str:
    """``text`` on one line, escaped as ``dind.errors.printable`` escapes, never cut.

    Messages carry text from registries and from the output directory; an error is
    one line on stderr whatever that text holds. (Bounds are the callers': a body
    read is at most 64 KiB, an error line cuts it.)
    """
    return errors.printable(text, None)


class FreezeError(DindError):
    """A registry, network, verification or disk failure that retries did not cure."""


class RegistryError(FreezeError):
    """The registry answered with an error status (401, 404, 429 or 5xx...)."""

    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        super().__init__(message)


class AuthError(RegistryError):
    """The registry or its token server refused the credentials, or wants some (401/403)."""


class NetworkError(FreezeError):
    """The connection failed, timed out or was cut before the body was complete."""


class VerificationError(FreezeError):
    """Content does not match its digest or size, or a pin no longer holds."""


class StoreError(FreezeError):
    """The output directory cannot be written (disk full, permissions, locked)."""
