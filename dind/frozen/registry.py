"""A registry HTTP API v2 client: manifests, blobs, Bearer token auth, retries.

HTTP goes through httpx (connection pooling, redirects that drop ``Authorization``
when they leave the registry's origin, e.g. for a CDN). One ``Registry`` serves
every download thread.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from dind.errors import UsageError
from dind.frozen.auth import TokenCache, parse_challenge, pull_scope
from dind.frozen.errors import FreezeError, RegistryError
from dind.frozen.manifest import ACCEPT, MAX_MANIFEST_BYTES
from dind.frozen.reference import DOCKER_HUB, DOCKER_HUB_ENDPOINT
from dind.frozen.retry import RETRY_STATUSES, RetryPolicy, Transient, parse_retry_after

T = TypeVar("T")
USER_AGENT = "dind-frozen-images"


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


def error_detail(response: httpx.Response) -> str:
    """``CODE: message`` from a registry's JSON error body, else the reason phrase."""
    try:
        errors = json.loads(response.read()[:65536])["errors"]
        return "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}" for e in errors[:3])
    except (ValueError, KeyError, TypeError, AttributeError, httpx.HTTPError):
        return response.reason_phrase


class Registry:
    """One registry endpoint; safe to share between threads."""

    def __init__(
        self,
        endpoint: str,
        client: httpx.Client,
        policy: RetryPolicy,
        cancel: threading.Event | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client = client
        self.policy = policy
        self.cancel = cancel or threading.Event()
        self.tokens = TokenCache()

    def get_manifest(self, repository: str, reference: str) -> Fetched:
        """GET a manifest by tag or digest, with retries; the digest is computed here."""
        url = f"{self.endpoint}/v2/{repository}/manifests/{reference}"
        sep = "@" if ":" in reference else ":"
        what = f"manifest {repository}{sep}{reference}"

        def once() -> Fetched:
            response = self.send(repository, url, {"Accept": ACCEPT}, what)
            try:
                self.check(response, what)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_MANIFEST_BYTES:
                        raise RegistryError(f"{what}: larger than {MAX_MANIFEST_BYTES} bytes")
            except httpx.TransportError as err:
                raise Transient(f"{what}: {describe(err)}") from None
            finally:
                response.close()
            algorithm = reference.partition(":")[0] if ":" in reference else "sha256"
            content_type = response.headers.get("Content-Type", "")
            return Fetched(bytes(body), content_type, digest_of(bytes(body), algorithm))

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
        """Send a streaming GET, answering one Bearer challenge; errors become typed ones."""
        scope = pull_scope(repository)
        for renewed in (False, True):
            token = self.tokens.get(scope)
            sent = dict(headers, Authorization=f"Bearer {token}") if token else headers
            try:
                request = self.client.build_request("GET", url, headers=sent)
                response = self.client.send(request, stream=True)
            except httpx.TransportError as err:
                raise Transient(f"{what}: {describe(err)}") from None
            except httpx.HTTPError as err:
                raise RegistryError(f"{what}: {describe(err)}") from None
            if response.status_code != 401 or renewed:
                return response
            challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            response.close()
            if challenge.scheme != "bearer" or "realm" not in challenge.params:
                return self._refused(url, what, challenge.scheme)
            self.tokens.drop(scope, token)
            self._fetch_token(challenge.params, scope)
        raise AssertionError("unreachable")

    def _refused(self, url: str, what: str, scheme: str) -> httpx.Response:
        how = f"{scheme.title()} auth" if scheme else "credentials"
        raise RegistryError(
            f"{what}: 401 Unauthorized from {url}: the registry wants {how}; "
            "only anonymous pulls are supported",
            401,
        )

    def _fetch_token(self, params: dict[str, str], scope: str) -> None:
        query = {"scope": scope}
        if "service" in params:
            query["service"] = params["service"]
        realm = params["realm"]
        what = f"token from {realm}"

        def once() -> None:
            try:
                response = self.client.get(realm, params=query)
            except httpx.TransportError as err:
                raise Transient(f"{what}: {describe(err)}") from None
            except httpx.HTTPError as err:
                raise RegistryError(f"{what}: {describe(err)}") from None
            self.check(response, what)
            try:
                doc = response.json()
                token = doc.get("token") or doc.get("access_token")
                expires = float(doc.get("expires_in") or 60)
            except (ValueError, AttributeError, TypeError):
                token = None
            if not isinstance(token, str) or not token:
                raise RegistryError(f"{what}: the answer holds no token")
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
                    raise FreezeError(f"{err} (gave up after {attempt} attempts)") from None
                self.sleep(self.policy.delay(attempt, err.retry_after))

    def sleep(self, seconds: float) -> None:
        """Wait, but wake up at once if the run is cancelled."""
        if self.cancel.wait(seconds):
            raise Cancelled("cancelled")


def describe(err: Exception) -> str:
    """A short text for an httpx error (some carry an empty message)."""
    text = str(err) or type(err).__name__
    if text != type(err).__name__:
        text = f"{type(err).__name__}: {text}"
    if "WRONG_VERSION_NUMBER" in text:
        text += "; a plain-HTTP registry needs --insecure"
    return text


def make_client(timeout: float) -> httpx.Client:
    """The shared HTTP client: redirects followed, keep-alive pool sized for the jobs."""
    return httpx.Client(
        follow_redirects=True,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
    )
