"""Where credentials come from: docker's config.json, credential helpers, the auth file
itself (symlinks, FIFOs), and bad input as one line with exit status 2.

Helpers are real scripts run through PATH; nothing here needs a registry (the tool
looks credentials up before it downloads anything).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dind.frozen import credentials, redact
from dind.frozen.credentials import (
    HUB_KEY,
    CredentialsError,
    CredentialStore,
    auth_host,
    key_host,
    parse_auth_config,
    read_auth_file,
)
from tests.frozen.conftest import Run

Freeze = Callable[..., Run]
CONSOLE = Path(sys.executable).with_name("dind-frozen-images")
SECRET = "hunter2-is-the-password"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_helper(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_keys_are_matched_as_docker_matches_them() -> None:
    assert key_host("https://index.docker.io/v1/") == "docker.io"
    assert key_host("registry-1.docker.io") == "docker.io"
    assert key_host("http://127.0.0.1:5000/v2/") == "127.0.0.1:5000"
    assert key_host("ghcr.io") == "ghcr.io"
    assert auth_host("Index.Docker.IO") == "docker.io"
    assert auth_host("Registry.Example:5000") == "Registry.Example:5000"
    assert credentials.helper_server("docker.io") == HUB_KEY


def test_parses_every_form_of_entry() -> None:
    doc = {
        "auths": {
            HUB_KEY: {"auth": b64(f"hub-user:{SECRET}")},
            "https://r.example:5000/v1/": {"username": "u2", "password": "p2"},
            "oauth.example": {"identitytoken": "refresh-me"},
            "store-only.example": {},
        },
        "credHelpers": {"ecr.example": "ecr-login"},
        "credsStore": "desktop",
        "psFormat": "ignored",
    }
    config = parse_auth_config(json.dumps(doc).encode(), "config.json")
    assert config.auths["docker.io"].username == "hub-user"
    assert config.auths["docker.io"].password == SECRET
    assert config.auths["docker.io"].basic_value() == f"Basic {b64(f'hub-user:{SECRET}')}"
    assert (config.auths["r.example:5000"].username, config.auths["r.example:5000"].password) == (
        "u2",
        "p2",
    )
    assert config.auths["oauth.example"].identity_token == "refresh-me"
    assert "store-only.example" not in config.auths
    assert config.helpers == {"ecr.example": "ecr-login"} and config.store == "desktop"
    assert SECRET not in repr(config)  # dataclass repr hides secrets


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "config.json: not valid JSON (Expecting property name"),
        (b"\xff\xfe\x00", "config.json: not UTF-8 text"),
        (b"[]", "config.json: not a JSON object"),
        (b'{"auths": []}', "config.json: auths is not a JSON object"),
        (b'{"auths": {"h": "x"}}', "config.json: auths['h'] is not a JSON object"),
        (b'{"auths": {"h": {"auth": 1}}}', "config.json: auths['h'].auth is not a string"),
        (
            b'{"auths": {"h": {"auth": "' + f"{SECRET}!".encode() + b'"}}}',
            "config.json: auths['h'].auth is not base64 of USER:PASSWORD",
        ),
        (
            b'{"auths": {"h": {"auth": "' + b64(SECRET).encode() + b'"}}}',
            "config.json: auths['h'].auth is not base64 of USER:PASSWORD",
        ),
        # Found by the fuzzer: a non-ASCII character raised ValueError from b64decode.
        (
            '{"auths": {"h": {"auth": "bm\u01d5="}}}'.encode(),
            "config.json: auths['h'].auth is not base64 of USER:PASSWORD",
        ),
        (b'{"credHelpers": {"h": 3}}', "config.json: credHelpers['h'] is not a string"),
        (b'{"credsStore": ["x"]}', "config.json: credsStore is not a string"),
        (b"[" * 100 + b"]" * 100, "nested deeper than 64 levels"),
    ],
)
def test_malformed_config_is_named_without_its_secrets(data: bytes, message: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        parse_auth_config(data, "config.json")
    assert message in str(caught.value)
    assert SECRET not in str(caught.value) and b64(SECRET) not in str(caught.value)


def test_helpers_come_first_and_not_found_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    asked = tmp_path / "asked"
    write_helper(
        bin_dir,
        "mine",
        f'read -r s; echo "$s" >> {asked}\n'
        '[ "$s" = "h.example" ] && echo \'{"Username": "from-helper", "Secret": "hs"}\' && exit 0\n'
        '[ "$s" = "tok.example" ] && echo \'{"Username": "<token>", "Secret": "rt"}\' && exit 0\n'
        "echo 'credentials not found in native keychain'; exit 1",
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    doc = {
        "auths": {"h.example": {"auth": b64("file:fp")}, "other.example": {"auth": b64("o:op")}},
        "credsStore": "mine",
    }
    store = CredentialStore(parse_auth_config(json.dumps(doc).encode(), "c.json"))
    found = store.for_host("h.example")
    assert found is not None and (found.username, found.password) == ("from-helper", "hs")
    assert found.origin == "helper docker-credential-mine"
    token = store.for_host("tok.example")
    assert token is not None and (token.username, token.identity_token) == ("", "rt")
    other = store.for_host("other.example")  # the store has nothing: the file's entry
    assert other is not None and (other.username, other.password) == ("o", "op")
    assert store.for_host("nothing.example") is None
    assert store.for_host("docker.io") is None
    store.for_host("h.example")  # asked once per host and run
    assert asked.read_text().splitlines() == [
        "h.example",
        "tok.example",
        "other.example",
        "nothing.example",
        HUB_KEY,
    ]


def test_helper_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    write_helper(bin_dir, "broken", f"echo 'keychain locked for {SECRET}'; exit 3")
    write_helper(bin_dir, "garbage", "echo 'not json'")
    write_helper(bin_dir, "slow", "exec sleep 30")
    write_helper(bin_dir, "chatty", "exec yes")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(credentials, "HELPER_TIMEOUT", 1.0)
    redact.register(SECRET)

    def error(helper: str) -> str:
        doc = {"credHelpers": {"h.example": helper}}
        store = CredentialStore(parse_auth_config(json.dumps(doc).encode(), "c.json"))
        with pytest.raises(CredentialsError) as caught:
            store.for_host("h.example")
        return str(caught.value)

    where = "c.json: credential helper 'docker-credential-{}' for h.example: "
    assert error("nosuch") == where.format("nosuch") + "not found in PATH"
    assert (
        error("broken") == where.format("broken") + "exit status 3: keychain locked for [redacted]"
    )
    assert error("garbage") == where.format("garbage") + "the answer is not JSON"
    assert error("slow") == where.format("slow") + "no answer within 1 s"
    assert error("chatty") == where.format("chatty") + "answered more than 1048576 bytes"
    assert error("../../bin/sh") == where.format("../../bin/sh") + "not a helper name"


# -- the auth file


def test_auth_file_symlinks_only_inside_its_directory(tmp_path: Path) -> None:
    """A Kubernetes secret volume: config.json -> ..data/config.json, ..data -> a dated dir.
    Followed. A link to a file elsewhere (or through ..) is refused, not read."""
    secret = tmp_path / "secret"
    dated = secret / "..2024_01_01"
    dated.mkdir(parents=True)
    (dated / "config.json").write_text('{"auths": {}}')
    (secret / "..data").symlink_to("..2024_01_01")
    (secret / "config.json").symlink_to("..data/config.json")
    assert read_auth_file(secret / "config.json", required=True) == b'{"auths": {}}'

    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("root:x:0:0")
    for target in (str(elsewhere), "../elsewhere", "sub/../../elsewhere"):
        link = tmp_path / "home" / "config.json"
        link.parent.mkdir(exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        with pytest.raises(CredentialsError) as caught:
            read_auth_file(link, required=True)
        assert str(caught.value) == (
            f"{link} is a symbolic link to {target!r}, outside {link.parent}; refusing to follow it"
        )


def test_auth_file_missing_fifo_or_directory(tmp_path: Path) -> None:
    assert read_auth_file(tmp_path / "none" / "config.json", required=False) is None
    assert read_auth_file(tmp_path / "config.json", required=False) is None
    with pytest.raises(CredentialsError, match=r"config\.json: no such file"):
        read_auth_file(tmp_path / "config.json", required=True)
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(CredentialsError, match=r"fifo\.json: not a regular file; refusing to read"):
        read_auth_file(tmp_path / "fifo.json", required=True)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(CredentialsError, match=r"dir\.json: not a regular file"):
        read_auth_file(tmp_path / "dir.json", required=True)
    (tmp_path / "big.json").write_bytes(b" " * (credentials.MAX_CONFIG_BYTES + 1))
    with pytest.raises(CredentialsError, match="larger than 4194304 bytes"):
        read_auth_file(tmp_path / "big.json", required=True)


# -- bad input on the command line: one line, exit 2, no traceback, nothing downloaded


def cli_bad_input(tmp_path: Path) -> list[tuple[list[str], str]]:
    (tmp_path / "notjson.json").write_text("{ this is not json")
    (tmp_path / "helper.json").write_text('{"credHelpers": {"127.0.0.1:9": "nosuch-helper"}}')
    (tmp_path / "outside.json").symlink_to("/etc/passwd")
    os.mkfifo(tmp_path / "fifo.json")
    image = ["127.0.0.1:9/x", "--insecure"]
    return [
        ([*image, "--mirror", "ftp://m.example"], "invalid --mirror 'ftp://m.example': the scheme"),
        ([*image, "--mirror", "http://u:p@m.example"], "no credentials in the URL"),
        ([*image, "--mirror", "http://m.example/?x=1"], "no query or fragment"),
        ([*image, "--mirror", "http://m_x:5000"], "bad host 'm_x:5000'"),
        ([*image, "--mirror", "http://m:99999"], "Port out of range"),
        (["127.0.0.1:9/x", "--mirror", "http://m.example"], "plain HTTP needs --insecure"),
        ([*image, "--auth-file", str(tmp_path / "notjson.json")], "notjson.json: not valid JSON"),
        (
            [*image, "--auth-file", str(tmp_path / "helper.json")],
            "helper.json: credential helper 'docker-credential-nosuch-helper' for "
            "127.0.0.1:9: not found in PATH",
        ),
        (
            [*image, "--auth-file", str(tmp_path / "outside.json")],
            "outside.json is a symbolic link to '/etc/passwd', outside",
        ),
        ([*image, "--auth-file", str(tmp_path / "fifo.json")], "fifo.json: not a regular file"),
        ([*image, "--auth-file", str(tmp_path / "missing.json")], "missing.json: no such file"),
    ]


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    """As separate processes (a FIFO must not hang one, a timeout would say so)."""
    for args, message in cli_bad_input(tmp_path):
        out = tmp_path / "out"
        proc = subprocess.run(
            [str(CONSOLE), str(out), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1, (args, proc.stderr)
        assert proc.stderr.startswith("dind-frozen-images: error: "), proc.stderr
        assert message in proc.stderr, (args, proc.stderr)
        assert proc.stdout == "" and not out.exists()


def test_environment_mirrors_are_parsed_like_options(
    freeze: Freeze, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIND_FROZEN_MIRRORS", "http://ok.example  gopher://bad.example")
    run = freeze(tmp_path / "out", "127.0.0.1:9/x", "--insecure")
    assert run.status == 2
    assert run.errors == [
        "dind-frozen-images: error: invalid --mirror 'gopher://bad.example': "
        "the scheme must be http or https"
    ]


def test_credentials_never_go_to_a_plain_http_realm_of_an_https_registry() -> None:
    """A registry on https that points its token realm at http would have the password
    cross the network in clear: refused before any request."""
    import httpx

    from dind.frozen.auth import parse_challenge
    from dind.frozen.credentials import Credentials
    from dind.frozen.errors import AuthError
    from dind.frozen.registry import Registry
    from dind.frozen.retry import RetryPolicy

    creds = Credentials("u", SECRET, origin="test")
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        registry = Registry("https://r.example", client, RetryPolicy(attempts=1), credentials=creds)
        challenge = parse_challenge('Bearer realm="http://auth.example/token",service="r"')
        with pytest.raises(AuthError) as caught:
            registry._fetch_token(challenge, "repository:a:pull")
    assert str(caught.value) == (
        "r.example: the token realm http://auth.example/token is plain HTTP; "
        "not sending credentials"
    )
