"""A token server for Debian's docker-registry in token-auth mode (tests only).

distribution's ``auth: token`` checks JWTs signed by a key whose certificate is in
its ``rootcertbundle``. This issuer makes such a key (ECDSA P-256, self-signed
certificate), checks Basic credentials on ``GET /token`` (or an identity token on
``POST /token`` with ``grant_type=refresh_token``, the OAuth2 form docker uses) and
answers ``{"token": JWT}`` whose ``access`` claim grants what the scope asks.
Every request is recorded, so tests see scopes, and that secrets went only here.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

ISSUER = "dind-test-issuer"
SERVICE = "dind-test-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    method: str
    scope: str
    account: str
    authorization: str
    form: dict[str, str] = field(default_factory=dict)
    status: int = 0


class TokenIssuer:
    """An HTTP token server on 127.0.0.1 for ``users`` (name -> password); a context manager."""

    def __init__(self, folder: Path, users: dict[str, str], lifetime: int = 300) -> None:
        self.users = users
        self.refresh_tokens: dict[str, str] = {}
        self.lifetime = lifetime
        self.requests: list[TokenRequest] = []
        self.lock = threading.Lock()
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = folder / "token-issuer.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        issuer = self

        class Handler(_Handler):
            server_of = issuer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def realm(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/token"

    def registry_auth(self) -> str:
        """The registry's ``auth`` section (YAML flow style) trusting this issuer."""
        return (
            f"{{token: {{realm: '{self.realm}', service: {SERVICE}, issuer: {ISSUER}, "
            f"rootcertbundle: '{self.bundle}'}}}}"
        )

    def __enter__(self) -> TokenIssuer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def sign(self, subject: str, scope: str, lifetime: int) -> str:
        """A JWT as distribution's token auth accepts it (ES256, the certificate in x5c)."""
        access = []
        kind, _, rest = scope.partition(":")
        repo, _, actions = rest.rpartition(":")
        if kind == "repository" and repo:
            access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class _Handler(BaseHTTPRequestHandler):
    server_of: TokenIssuer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer("GET", parse_qs(urlsplit(self.path).query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        self._answer("POST", form)

    def _answer(self, method: str, query: dict[str, list[str]]) -> None:
        issuer = self.server_of
        first = {k: v[0] for k, v in query.items()}
        record = TokenRequest(
            method,
            first.get("scope", ""),
            first.get("account", ""),
            self.headers.get("Authorization", ""),
            first if method == "POST" else {},
        )
        with issuer.lock:
            issuer.requests.append(record)
        subject = self._subject(method, first, record.authorization)
        if subject is None or first.get("service") != SERVICE:
            record.status = 401
            return self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad login"}]})
        token = issuer.sign(subject, first.get("scope", ""), issuer.lifetime)
        record.status = 200
        return self._reply(200, {"token": token, "expires_in": issuer.lifetime})

    def _subject(self, method: str, form: dict[str, str], authorization: str) -> str | None:
        issuer = self.server_of
        if method == "POST":
            if form.get("grant_type") != "refresh_token":
                return None
            return issuer.refresh_tokens.get(form.get("refresh_token", ""))
        if not authorization.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if issuer.users.get(user) == password else None

    def _reply(self, status: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
