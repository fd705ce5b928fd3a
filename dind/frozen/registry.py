"""A registry HTTP API v2 client: manifests, blobs, Basic and Bearer auth, retries.

HTTP goes through httpx (connection pooling, redirects that drop ``Authorization``
when they leave the registry's origin, e.g. for a CDN). One ``Registry`` serves
every download thread.

Auth follows the registry's ``WWW-Authenticate``: ``Basic`` sends the credentials
(from then on with every request); ``Bearer`` fetches a token per repository scope
from its realm (anonymously, with the credentials as Basic auth, or by POSTing an
identity token as an OAuth2 refresh token), renewed when a request gets 401 again.
Credentials and tokens are registered with ``redact``; credentials never go to a
plain-HTTP token realm of an HTTPS registry.

Nothing the registry sends is read without a bound: manifests, tokens and error
bodies go through ``read_body`` (blobs are streamed to disk, bounded by their
descriptor's size), and redirects are followed here, from httpx's ``next_request``,
because httpx would read a redirect's whole body before following it.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx

from dind.errors import UsageError
from dind.frozen import redact
from dind.frozen.auth import Challenge, TokenCache, parse_challenge, pull_scope
from dind.frozen.credentials import Credentials
from dind.frozen.errors import AuthError, FreezeError, RegistryError, printable
from dind.frozen.jsondoc import parse_json
from dind.frozen.manifest import ACCEPT, MAX_MANIFEST_BYTES
from dind.frozen.reference import DOCKER_HUB, DOCKER_HUB_ENDPOINT
from dind.frozen.retry import (
    RETRY_STATUSES,
    RetryPolicy,
    Transient,
    Unreachable,
    parse_retry_after,
)

T = TypeVar("T")
USER_AGENT = "dind-frozen-images"
MAX_TOKEN_BYTES = 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
MAX_REDIRECTS = 10
READ_SIZE = 256 * 1024
"""Bytes per recv() for HTTP/1.1 bodies (httpcore's default is 64 KiB): a blob then runs
through h11 in a quarter as many pieces; measured 13 % less CPU per byte, and as much
less time, on the loopback benchmark (scripts/bench-frozen)."""
_TOKEN = re.compile(r"[\x21-\x7e]+")
"""What may follow ``Bearer `` in a header: visible ASCII (JWTs and opaque tokens)."""


class Cancelled(FreezeError):
    """Another download failed or the user interrupted: stop, keep partial files."""


def endpoint_for(registry: str, override: str | None, insecure: bool) -> str:
    """The base URL to talk to for a reference's registry host."""
    if override:
        url = override.rstrip("/")
        if url.startswith("http://") and not insecure:
            raise UsageError(f"--registry {override}: plain HTTP needs --insecure")
        if not url.startswith(("http://", "https://")):
            url = f"{'http' if insecure else 'https'}://{url}"
        try:
            urlsplit(url).port  # noqa: B018  a bad port or IPv6 literal is ValueError
        except ValueError as err:
            raise UsageError(f"--registry {printable(override)}: {err}") from None
        return url
    if registry == DOCKER_HUB:
        return DOCKER_HUB_ENDPOINT
    return f"{'http' if insecure else 'https'}://{registry}"


@dataclass(frozen=True)
class Fetched:
    """A manifest as served: its bytes, Content-Type and the digest computed from them."""

    body: bytes
    content_type: str
    digest: str


def digest_of(body: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"


def read_body(response: httpx.Response, limit: int, what: str) -> bytes:
    """The whole body, or RegistryError as soon as it passes ``limit`` bytes.

    The one place a body is read into memory. Transport errors are the caller's; a body
    encoded against ``Accept-Encoding: identity`` that does not decode is the registry's.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise RegistryError(f"{what}: larger than {limit} bytes ({declared} announced)")
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise RegistryError(f"{what}: larger than {limit} bytes")
    except httpx.DecodingError as err:
        raise RegistryError(f"{what}: {describe(err)}") from None
    return bytes(body)


def error_detail(response: httpx.Response) -> str:
    """``CODE: message`` from a registry's JSON error body, else the reason phrase."""
    try:
        doc = parse_json(read_body(response, MAX_ERROR_BYTES, "error body"))
    except (ValueError, RegistryError, httpx.HTTPError):
        return response.reason_phrase
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return response.reason_phrase
    text = "; ".join(
        f"{e.get('code', '?')}: {e.get('message', '')}" for e in errors[:3] if isinstance(e, dict)
    )
    return printable(text)[:500] or response.reason_phrase


def host_of(endpoint: str) -> str:
    """``host[:port]`` of an endpoint URL: what credentials are stored under."""
    return urlsplit(endpoint).netloc


class Registry:
    """One registry endpoint; safe to share between threads."""

    def __init__(
        self,
        endpoint: str,
        client: httpx.Client,
        policy: RetryPolicy,
        cancel: threading.Event | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client = client
        self.policy = policy
        self.cancel = cancel or threading.Event()
        self.credentials = credentials
        self.tokens = TokenCache()
        self.basic = False
        """Set once the registry asked for Basic auth: the credentials go with every request."""

    @property
    def host(self) -> str:
        return host_of(self.endpoint)

    def get_manifest(self, repository: str, reference: str) -> Fetched:
        """GET a manifest by tag or digest, with retries; the digest is computed here."""
        url = f"{self.endpoint}/v2/{repository}/manifests/{reference}"
        sep = "@" if ":" in reference else ":"
        what = f"manifest {repository}{sep}{reference}"

        def once() -> Fetched:
            response = self.send(repository, url, {"Accept": ACCEPT}, what)
            try:
                self.check(response, what)
                body = read_body(response, MAX_MANIFEST_BYTES, what)
            except httpx.TransportError as err:
                raise Transient(f"{what}: {describe(err)}") from None
            finally:
                response.close()
            algorithm = reference.partition(":")[0] if ":" in reference else "sha256"
            content_type = response.headers.get("Content-Type", "")
            return Fetched(body, content_type, digest_of(body, algorithm))

        return self.with_retries(once)

    def open_blob(self, repository: str, digest: str, offset: int) -> httpx.Response:
        """One streaming GET of a blob from ``offset``; the caller reads and closes it."""
        url = f"{self.endpoint}/v2/{repository}/blobs/{digest}"
        # Raw bytes are what the digest covers: no transfer compression.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        what = f"blob {digest}"
        response = self.send(repository, url, headers, what)
        try:
            self.check(response, what)
        except BaseException:
            response.close()
            raise
        return response

    def send(self, repository: str, url: str, headers: dict[str, str], what: str) -> httpx.Response:
        """Send a streaming GET, answering the registry's auth challenge; errors become typed."""
        scope = pull_scope(repository)
        for renewed in (False, True):
            token = None if self.basic else self.tokens.get(scope)
            auth = self._basic() if self.basic else f"Bearer {token}" if token else ""
            sent = dict(headers, Authorization=auth) if auth else headers
            response = self.get(url, sent, what)
            if response.status_code != 401:
                return response
            challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            detail = error_detail(response)
            response.close()
            if renewed or (self.basic and challenge.scheme == "basic"):
                raise AuthError(self._failed(f"{url} answered 401 ({detail})"), 401)
            if challenge.scheme == "basic":
                self._use_basic(url, detail)
            elif challenge.scheme == "bearer" and "realm" in challenge.params:
                self.tokens.drop(scope, token)
                self._fetch_token(challenge, scope)
            else:
                raise AuthError(
                    f"{self.host}: {url} answered 401 ({detail}) without a challenge this tool "
                    f"knows ({printable(challenge.scheme) or 'none'}; Basic and Bearer are)",
                    401,
                )
        raise AssertionError("unreachable")

    def _basic(self) -> str:
        assert self.credentials is not None
        return self.credentials.basic_value()

    def _use_basic(self, url: str, detail: str) -> None:
        creds = self.credentials
        if creds is None or not creds.password:
            raise AuthError(self._needs(f"{url} asks for Basic auth ({detail})"), 401)
        self.basic = True

    def _needs(self, what: str) -> str:
        return (
            f"{self.host}: {what}; give credentials with --auth-file (docker's config.json) "
            "or --username and --password-stdin"
        )

    def _failed(self, what: str) -> str:
        creds = self.credentials
        if creds is None:
            return self._needs(what)
        who = f"user {creds.username!r}" if creds.username else "an identity token"
        return f"{self.host}: authentication failed for {who} (from {creds.origin}): {what}"

    def get(
        self,
        url: str,
        headers: dict[str, str],
        what: str,
        params: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> httpx.Response:
        """A streaming GET (a POST with ``form``); redirects are followed without reading
        their bodies."""
        try:
            method = "POST" if form is not None else "GET"
            request = self.client.build_request(
                method, url, headers=headers, params=params, data=form
            )
            for _ in range(MAX_REDIRECTS + 1):
                response = self.client.send(request, stream=True, follow_redirects=False)
                if response.next_request is None:
                    return response
                request = response.next_request
                response.close()
        except httpx.UnsupportedProtocol as err:
            raise RegistryError(f"{what}: {describe(err)}") from None
        except httpx.TransportError as err:
            raise Transient(f"{what}: {describe(err)}") from None
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            raise RegistryError(f"{what}: {describe(err)}") from None
        raise RegistryError(f"{what}: more than {MAX_REDIRECTS} redirects")

    def _fetch_token(self, challenge: Challenge, scope: str) -> None:
        """A token for ``scope`` from the challenge's realm, with the credentials if any."""
        params = challenge.params
        realm = params["realm"]
        query = {"scope": scope}
        if "service" in params:
            query["service"] = params["service"]
        creds = self.credentials
        if creds is not None and realm.startswith("http://") and self.endpoint.startswith("https"):
            raise AuthError(
                f"{self.host}: the token realm {realm} is plain HTTP; not sending credentials",
                401,
            )
        what = f"token from {realm}"
        headers: dict[str, str] = {}
        form: dict[str, str] | None = None
        if creds is not None and creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": USER_AGENT,
                **query,
            }
        elif creds is not None and creds.password:
            headers["Authorization"] = creds.basic_value()
            if creds.username:
                query["account"] = creds.username

        def once() -> None:
            response = self.get(realm, headers, what, params=None if form else query, form=form)
            try:
                if response.status_code in (401, 403):
                    detail = error_detail(response)
                    answer = f"the token server {realm} answered {response.status_code} ({detail})"
                    raise AuthError(self._failed(answer), response.status_code)
                self.check(response, what)
                body = read_body(response, MAX_TOKEN_BYTES, what)
            except httpx.TransportError as err:
                raise Transient(f"{what}: {describe(err)}") from None
            finally:
                response.close()
            token, expires = parse_token(body, what)
            self.tokens.put(scope, token, expires)

        self.with_retries(once)

    def check(self, response: httpx.Response, what: str) -> None:
        """Raise for anything but 200/206: Transient for statuses worth retrying."""
        status = response.status_code
        if status in (200, 206):
            return
        detail = error_detail(response)
        message = f"{what}: {status} {detail}".rstrip()
        if status in RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise Transient(message, retry_after)
        if status == 404:
            message = f"{what}: not found (404 {detail})"
        elif status in (401, 403):
            message = f"{what}: not found or access denied ({status} {detail})"
        raise RegistryError(message, status)

    def with_retries(self, once: Callable[[], T]) -> T:
        """Call ``once`` until it succeeds, a failure is not Transient, or attempts run out."""
        attempt = 0
        while True:
            attempt += 1
            if self.cancel.is_set():
                raise Cancelled("cancelled")
            try:
                return once()
            except Transient as err:
                if attempt >= self.policy.attempts:
                    raise Unreachable(f"{err} (gave up after {attempt} attempts)") from None
                self.sleep(self.policy.delay(attempt, err.retry_after))

    def sleep(self, seconds: float) -> None:
        """Wait, but wake up at once if the run is cancelled."""
        if self.cancel.wait(seconds):
            raise Cancelled("cancelled")


def parse_token(body: bytes, what: str) -> tuple[str, float]:
    """The token and its lifetime in seconds from a token server's JSON answer."""
    try:
        doc = parse_json(body)
    except ValueError as err:
        raise RegistryError(f"{what}: the answer is not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what}: the answer holds no token")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise RegistryError(f"{what}: the answer holds no token")
    redact.register(token)
    expires = doc.get("expires_in")
    if not isinstance(expires, int | float) or not math.isfinite(expires) or expires <= 0:
        expires = 60.0
    return token, float(expires)


def describe(err: Exception) -> str:
    """A short text for an httpx error (some carry an empty message)."""
    text = str(err) or type(err).__name__
    if text != type(err).__name__:
        text = f"{type(err).__name__}: {text}"
    if "WRONG_VERSION_NUMBER" in text:
        text += "; a plain-HTTP registry needs --insecure"
    return text


def make_client(timeout: float, jobs: int = 4) -> httpx.Client:
    """The shared HTTP client: keep-alive pool sized for the jobs (redirects: ``get``)."""
    limits = httpx.Limits(max_connections=max(32, 2 * jobs), max_keepalive_connections=16)
    # A class setting of httpcore's public HTTP11Connection; this process is the tool's own.
    httpcore.HTTP11Connection.READ_NUM_BYTES = READ_SIZE
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
        # Bodies as sent, so a bound on bytes read is a bound on memory.
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        limits=limits,
        transport=_LazyTLS(limits),
    )


class _LazyTLS(httpx.BaseTransport):
    """Plain HTTP at once; HTTPS through a verifying transport made on first use.

    Loading the CA bundle costs 0.1-0.2 s here, a third of a run from a loopback
    registry; runs that never speak TLS (local registries, mirrors) skip it.
    """

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        # verify=False only spares loading CAs: this transport never sees https URLs.
        self._plain = httpx.HTTPTransport(limits=limits, verify=False)
        self._tls: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "https":
            return self._plain.handle_request(request)
        with self._lock:
            if self._tls is None:
                self._tls = httpx.HTTPTransport(limits=self._limits)
            tls = self._tls
        return tls.handle_request(request)

    def close(self) -> None:
        self._plain.close()
        if self._tls is not None:
            self._tls.close()
