"""Private registries for real: Debian's docker-registry behind htpasswd (Basic auth) and
behind token auth (distribution checks the JWTs of tests/frozen/tokens.py's issuer).

Credentials come from a docker ``config.json`` (``auths``), from a credential
helper it names (a script written here, run through PATH), from
``--username --password-stdin``; a refused password is one line naming the
registry, exit 1. The password (and its Basic header) must appear nowhere: not on
stdout or stderr, not in JSON logs, not in any file of the output directory.
(Renewal of a token the registry stops accepting is shown in test_download.py
with the test server: distribution accepts an expired JWT for 60 s more.)
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.frozen import images
from tests.frozen.conftest import PASSWORD, USER, Run, TokenRegistry
from tests.frozen.server import Fault, RegistryServer
from tests.frozen.test_download import check_layout
from tests.support.registry import LocalRegistry

Freeze = Callable[..., Run]
FAST = ("--insecure", "--backoff", "0", "--retries", "2")
SECRET_LAYER = images.layer({"private/data": images.noise(200_000, 40)})
OTHER_LAYER = images.layer({"other/data": b"other" * 100})
PRIVATE = images.image([SECRET_LAYER], label="private")
OTHER = images.image([OTHER_LAYER], label="other")
CONSOLE = Path(sys.executable).with_name("dind-frozen-images")
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture(scope="module")
def pushed(registry: LocalRegistry) -> None:
    """The private images, pushed to the open registry whose storage the protected serve."""
    with httpx.Client(timeout=30) as client:
        images.push(client, registry.url, "private/app", "1", PRIVATE)
        images.push(client, registry.url, "private/other", "1", OTHER)


@pytest.fixture(params=["htpasswd", "token"])
def protected(
    request: pytest.FixtureRequest, pushed: None, htpasswd_registry: LocalRegistry
) -> Iterator[LocalRegistry]:
    """Each protected registry in turn: Basic auth, then token auth."""
    if request.param == "htpasswd":
        yield htpasswd_registry
    else:
        tokens: TokenRegistry = request.getfixturevalue("token_registry")
        yield tokens.registry


def no_secret_anywhere(*texts: str, out: Path | None = None) -> None:
    """Neither the password nor its Basic header value in any text nor any file of ``out``."""
    for text in texts:
        assert PASSWORD not in text and BASIC not in text, text
    if out is not None and out.exists():
        for path in out.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                assert PASSWORD.encode() not in data and BASIC.encode() not in data, path


def config_json(folder: Path, doc: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(doc))
    return path


def helper(bin_dir: Path, name: str, host: str, log: Path) -> None:
    """``docker-credential-NAME``: answers ``get`` for ``host`` (and logs what it was asked)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    answer = json.dumps({"ServerURL": host, "Username": USER, "Secret": PASSWORD})
    script.write_text(
        "#!/bin/sh\n"
        f'read -r server; echo "$1 $server" >> {log}\n'
        f'if [ "$1" = get ] && [ "$server" = "{host}" ]; then echo \'{answer}\'; exit 0; fi\n'
        'echo "credentials not found in native keychain"; exit 1\n'
    )
    script.chmod(0o755)


def test_credentials_from_config_auths(
    protected: LocalRegistry, freeze: Freeze, tmp_path: Path
) -> None:
    host = protected.hostport
    auth = config_json(tmp_path / "docker", {"auths": {host: {"auth": BASIC}}})
    out = tmp_path / "out"
    run = freeze(out, f"{host}/private/app:1", "--auth-file", auth, *FAST, "-v")
    assert run.status == 0, run.err
    assert check_layout(out)[0]["RepoTags"] == [f"{host}/private/app:1"]
    no_secret_anywhere(run.err, run.out, out=out)
    # JSON records too
    out2 = tmp_path / "json"
    run = freeze(out2, f"{host}/private/app:1", "--auth-file", auth, *FAST, "--log-format", "json")
    assert run.status == 0, run.err
    assert [json.loads(line)["level"] for line in run.lines] == ["INFO", "INFO"]
    no_secret_anywhere(run.err, run.out, out=out2)


def test_credentials_from_a_helper(
    protected: LocalRegistry,
    freeze: Freeze,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``credHelpers`` names the helper for the host; ``credsStore`` is the fallback for the
    rest and has nothing for it (its 'credentials not found' is no error)."""
    host = protected.hostport
    asked = tmp_path / "asked"
    helper(tmp_path / "bin", "dindtest", host, asked)
    helper(tmp_path / "bin", "emptystore", "nothing-here", asked)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    docker = tmp_path / "docker"
    config_json(docker, {"credHelpers": {host: "dindtest"}, "credsStore": "emptystore"})
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))  # the default auth file
    out = tmp_path / "out"
    run = freeze(out, f"{host}/private/app:1", *FAST, "-v")
    assert run.status == 0, run.err
    assert asked.read_text() == f"get {host}\n"
    check_layout(out)
    no_secret_anywhere(run.err, run.out, out=out)


def test_password_stdin(protected: LocalRegistry, tmp_path: Path) -> None:
    """The console script as CI runs it: ``echo "$PASSWORD" | ... --password-stdin``."""
    host = protected.hostport
    out = tmp_path / "out"
    argv = [str(CONSOLE), str(out), f"{host}/private/app:1", "--username", USER]
    proc = subprocess.run(
        [*argv, "--password-stdin", *FAST, "-v", "--log-format", "json"],
        input=f"{PASSWORD}\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "none")},
    )
    assert proc.returncode == 0, proc.stderr
    check_layout(out)
    no_secret_anywhere(proc.stdout, proc.stderr, out=out)


def test_wrong_password_is_one_line_naming_the_registry(
    protected: LocalRegistry, freeze: Freeze, tmp_path: Path
) -> None:
    host = protected.hostport
    wrong = base64.b64encode(f"{USER}:{PASSWORD}-but-wrong".encode()).decode()
    auth = config_json(tmp_path / "docker", {"auths": {f"http://{host}/v2/": {"auth": wrong}}})
    for log_format in ("text", "json"):
        out = tmp_path / log_format
        run = freeze(
            out, f"{host}/private/app:1", "--auth-file", auth, *FAST, "--log-format", log_format
        )
        assert run.status == 1
        assert len(run.lines) == 1, run.err
        line = run.lines[0] if log_format == "text" else json.loads(run.lines[0])["message"]
        assert f"{host}: authentication failed for user 'alice' (from {auth})" in line
        assert "Traceback" not in run.err
        no_secret_anywhere(run.err, run.out, out=out)
        assert f"{PASSWORD}-but-wrong" not in run.err and wrong not in run.err
        assert not (out / "manifest.json").exists()


def test_without_credentials_the_message_says_how_to_give_them(
    protected: LocalRegistry, freeze: Freeze, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    run = freeze(tmp_path / "out", f"{protected.hostport}/private/app:1", *FAST)
    assert run.status == 1
    (error,) = run.errors
    assert error.startswith(f"dind-frozen-images: error: {protected.hostport}: ")
    assert error.endswith(
        "give credentials with --auth-file (docker's config.json) "
        "or --username and --password-stdin"
    )


def test_token_per_repository_with_basic_login(
    token_registry: TokenRegistry, pushed: None, freeze: Freeze, tmp_path: Path
) -> None:
    """One token per repository scope, each asked for with the login as Basic auth."""
    host = token_registry.registry.hostport
    issuer = token_registry.issuer
    auth = config_json(tmp_path / "docker", {"auths": {host: {"auth": BASIC}}})
    before = len(issuer.requests)
    run = freeze(
        tmp_path / "out",
        f"{host}/private/app:1",
        f"{host}/private/other:1",
        "--auth-file",
        auth,
        *FAST,
    )
    assert run.status == 0, run.err
    asked = issuer.requests[before:]
    assert sorted(r.scope for r in asked) == [
        "repository:private/app:pull",
        "repository:private/other:pull",
    ]
    assert {(r.method, r.account, r.authorization, r.status) for r in asked} == {
        ("GET", USER, f"Basic {BASIC}", 200)
    }


def test_identity_token_is_posted_as_a_refresh_token(
    token_registry: TokenRegistry, pushed: None, freeze: Freeze, tmp_path: Path
) -> None:
    """``identitytoken`` (what ``docker login`` stores for OAuth registries) goes to the
    realm as ``grant_type=refresh_token``, never as a password."""
    host = token_registry.registry.hostport
    issuer = token_registry.issuer
    refresh = "refresh-token-for-alice-0123456789"
    issuer.refresh_tokens[refresh] = USER
    auth = config_json(tmp_path / "docker", {"auths": {host: {"identitytoken": refresh}}})
    before = len(issuer.requests)
    run = freeze(tmp_path / "out", f"{host}/private/app:1", "--auth-file", auth, *FAST, "-v")
    assert run.status == 0, run.err
    (asked,) = issuer.requests[before:]
    assert (asked.method, asked.authorization, asked.status) == ("POST", "", 200)
    assert asked.form["grant_type"] == "refresh_token" and asked.form["refresh_token"] == refresh
    assert refresh not in run.err


def test_secrets_echoed_by_a_registry_are_redacted(freeze: Freeze, tmp_path: Path) -> None:
    """A registry that quotes the Authorization header back in its error: the line still
    shows no secret (every record goes through dind.frozen.redact)."""
    with RegistryServer(token_auth=True) as server:
        images.publish(server.content, "library/app", "1", PRIVATE)
        echo = json.dumps(
            {"errors": [{"code": "DENIED", "message": f"bad login Basic {BASIC} {PASSWORD}"}]}
        ).encode()
        server.fault(Fault("/token", "body", status=403, body=echo, times=5))
        auth = config_json(tmp_path / "docker", {"auths": {server.hostport: {"auth": BASIC}}})
        run = freeze(
            tmp_path / "out", f"{server.hostport}/library/app:1", "--auth-file", auth, *FAST
        )
    assert run.status == 1
    (error,) = run.errors
    assert "(DENIED: bad login [redacted] [redacted])" in error
    no_secret_anywhere(run.err)


def test_username_needs_one_registry_and_the_stdin_flag(
    freeze: Freeze, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"pw\n")))
    run = freeze(tmp_path, "a.example/x", "--username", "u")
    assert run.status == 2 and run.errors == [
        "dind-frozen-images: error: --username and --password-stdin go together"
    ]
    run = freeze(tmp_path, "a.example/x", "b.example/y", "--username", "u", "--password-stdin")
    assert run.status == 2
    assert "the images come from several registries (a.example, b.example)" in run.err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n")))
    run = freeze(tmp_path, "a.example/x", "--username", "u", "--password-stdin")
    assert run.status == 2 and "stdin held no password" in run.err


def test_a_closed_stdin_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """`... --password-stdin <&-`: Python's sys.stdin is then None."""
    script = '"$0" "$1" a.example/x --username u --password-stdin <&-'
    done = subprocess.run(
        ["bash", "-c", script, str(CONSOLE), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == "dind-frozen-images: error: --password-stdin: no standard input\n"
