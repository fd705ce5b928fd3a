"""Reference parsing: docker's normalisation rules, registries with ports, digests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dind.errors import UsageError
from dind.frozen.reference import Reference, parse_digest, parse_reference, parse_repo_tag

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest", "repo_tag"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None, "busybox:1.36"),
        ("library/busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
        ("index.docker.io/foo/bar:x", "docker.io", "foo/bar", "x", None, "foo/bar:x"),
        ("foo/bar", "docker.io", "foo/bar", "latest", None, "foo/bar:latest"),
        (f"busybox@{D}", "docker.io", "library/busybox", None, D, None),
        (f"busybox:1.36@{D}", "docker.io", "library/busybox", "1.36", D, "busybox:1.36"),
        ("localhost/foo", "localhost", "foo", "latest", None, "localhost/foo:latest"),
        (
            "localhost:5000/foo",
            "localhost:5000",
            "foo",
            "latest",
            None,
            "localhost:5000/foo:latest",
        ),
        (
            "127.0.0.1:5000/a/b/c:v1.2-rc_3",
            "127.0.0.1:5000",
            "a/b/c",
            "v1.2-rc_3",
            None,
            "127.0.0.1:5000/a/b/c:v1.2-rc_3",
        ),
        (f"ghcr.io/o/r:t@{D}", "ghcr.io", "o/r", "t", D, "ghcr.io/o/r:t"),
        ("[::1]:5000/foo:bar", "[::1]:5000", "foo", "bar", None, "[::1]:5000/foo:bar"),
        ("Registry/foo", "Registry", "foo", "latest", None, "Registry/foo:latest"),
        ("a__b-c---d/e.f", "docker.io", "a__b-c---d/e.f", "latest", None, "a__b-c---d/e.f:latest"),
        ("docker.io/a.b/c", "docker.io", "a.b/c", "latest", None, "docker.io/a.b/c:latest"),
        # Found by fuzzing: "library/" goes only from one-component names, as docker
        # does; "dex/lb-slim" would be another repository.
        ("library/dex/lb", "docker.io", "library/dex/lb", "latest", None, "library/dex/lb:latest"),
        (
            "docker.io/localhost/foo",
            "docker.io",
            "localhost/foo",
            "latest",
            None,
            "docker.io/localhost/foo:latest",
        ),
    ],
)
def test_parses_like_docker(
    text: str,
    registry: str,
    repository: str,
    tag: str | None,
    digest: str | None,
    repo_tag: str | None,
) -> None:
    ref = parse_reference(text)
    assert ref == Reference(registry, repository, tag, digest)
    assert ref.repo_tag == repo_tag
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" busybox", "spaces"),
        ("Busybox", "component"),
        ("busybox:", "bad tag"),
        ("busybox:-x", "bad tag"),
        ("busybox:" + "a" * 129, "bad tag"),
        ("busybox:café", "bad tag"),  # \w took any script's letters and digits
        ("busybox:\uff11", "bad tag"),
        ("busybox:x\u212a", "bad tag"),
        ("busybox:a\x1bb", "bad tag"),
        ("[::ffff:1.2.3.4]:5000/foo", "bad registry host"),
        ("busybox@sha256:abc", "digest"),
        ("busybox@md5:" + "a" * 32, "digest"),
        ("busybox@sha256:" + "AB" * 32, "digest"),
        ("foo//bar", "component"),
        ("foo/bar_", "component"),
        ("localhost:5000/", "no repository"),
        ("-bad.host:5000/foo", "bad registry host"),
        ("a/" + "b" * 260, "longer than"),
    ],
)
def test_rejects_bad_references(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        parse_reference(text)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("busybox:1.36", True),
        ("localhost:5000/a/b:v1", True),
        ("[::1]:5000/foo:bar", True),
        ("busybox", False),  # docker load wants the tag written out
        ("localhost:5000/a", False),
        (f"busybox@{D}", False),
        (f"busybox:1@{D}", False),
        ("busybox:café", False),
    ],
)
def test_repo_tags_as_docker_load_accepts_them(text: str, ok: bool) -> None:
    if ok:
        assert parse_repo_tag(text).repo_tag is not None
    else:
        with pytest.raises(UsageError):
            parse_repo_tag(text)


def test_digest_check() -> None:
    assert parse_digest(D) == D
    assert parse_digest("sha512:" + "0" * 128).startswith("sha512:")
    with pytest.raises(UsageError):
        parse_digest("sha256:" + "0" * 63)


_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_host = st.sampled_from(["docker.io", "localhost:5000", "registry.example.com", "10.0.0.1:443"])


@given(
    host=_host,
    path=st.lists(_component, min_size=1, max_size=3),
    tag=st.none() | _tag,
    digest=st.none() | st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True),
)
def test_round_trip(host: str, path: list[str], tag: str | None, digest: str | None) -> None:
    """What a parsed reference prints parses back to the same reference."""
    text = (
        f"{host}/{'/'.join(path)}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    )
    ref = parse_reference(text)
    assert parse_reference(str(ref)) == ref
    assert ref.tag == (tag or (None if digest else "latest"))
