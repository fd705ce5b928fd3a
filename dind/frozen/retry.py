"""When and how long to wait before trying an HTTP request again.

``attempts`` counts requests sent, the first included (``--retries``); a body that is
resumed with a Range request after a cut is one more attempt.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

from dind.frozen.errors import FreezeError

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Transient(FreezeError):
    """A failure that another attempt may cure; ``retry_after`` is the server's wish."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Unreachable(FreezeError):
    """Attempts ran out on failures that another attempt might have cured (the network,
    a 5xx, a stall): the source is down or cut off, not refusing."""


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per request and exponential backoff with jitter between them."""

    attempts: int = 5
    backoff: float = 1.0
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        base = min(self.backoff * 2.0 ** (attempt - 1), self.max_delay)
        return float(base * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not crypto


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # RFC 9110 delta-seconds: ASCII digits only
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):  # a huge day or year: OverflowError
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
