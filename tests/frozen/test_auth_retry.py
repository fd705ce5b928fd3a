"""Challenge parsing, Retry-After and backoff: the pure parts of the client."""

from __future__ import annotations

import email.utils

from dind.frozen.auth import TokenCache, parse_challenge
from dind.frozen.retry import RetryPolicy, parse_retry_after


def test_parses_docker_hub_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    challenge = parse_challenge(header)
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull",
    }


def test_parses_odd_challenges() -> None:
    c = parse_challenge(
        'Bearer realm="https://x/t?a=1,b=2", scope="repository:a/b:pull,push", '
        "error=insufficient_scope"
    )
    assert c.params == {
        "realm": "https://x/t?a=1,b=2",
        "scope": "repository:a/b:pull,push",
        "error": "insufficient_scope",
    }
    assert parse_challenge('Basic realm="Registry Realm"').scheme == "basic"
    assert parse_challenge('Bearer realm="a\\"b"').params == {"realm": 'a"b'}
    assert parse_challenge("").scheme == ""


def test_token_cache_drops_only_the_refused_token() -> None:
    cache = TokenCache()
    cache.put("s", "t1", 300)
    cache.drop("s", "other")
    assert cache.get("s") == "t1"
    cache.drop("s", "t1")
    assert cache.get("s") is None


def test_retry_after_and_backoff() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    # Found by the fuzzer: digits by Unicode (a subscript zero) are no delta-seconds.
    assert parse_retry_after("\n\u2080") is None
    assert parse_retry_after("\u0663") is None  # ARABIC-INDIC DIGIT THREE
    # Found by fuzzing: a day number past C long overflowed (a traceback, not None).
    assert parse_retry_after("Wed, 210000000000000000000 Oct 2015 0:28:00 T") is None
    assert parse_retry_after("Wed, 21 Oct 99999 07:28:00 GMT") is None
    date = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == 10.0
    policy = RetryPolicy(attempts=5, backoff=1.0, max_delay=4.0)
    assert 0.5 <= policy.delay(1) <= 1.0
    assert 1.0 <= policy.delay(2) <= 2.0
    assert 2.0 <= policy.delay(10) <= 4.0
    assert policy.delay(1, retry_after=100) == 4.0
