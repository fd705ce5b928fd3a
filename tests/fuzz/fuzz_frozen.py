"""Fuzz targets for ``dind-frozen-images``' parsers of registry and local input.

Contracts (the errors each function documents, nothing else):

- ``manifest``: ``parse_manifest``, ``select_platform`` and ``parse_config`` raise only
  ``VerificationError``; every descriptor they return names a blob path inside
  ``blobs/`` (its digest becomes a file name).
- ``reference``: ``parse_reference``, ``parse_repo_tag``, ``parse_digest`` and
  ``parse_platform`` raise only ``UsageError``; a parsed reference prints as text
  that parses back to it.
- ``registry-text``: ``parse_json`` raises only ValueError and what it accepts can be
  written back (no RecursionError later); ``parse_token`` only ``RegistryError``;
  ``entry_problem`` (an existing manifest.json), ``parse_challenge``,
  ``parse_retry_after`` and ``printable`` never raise, and ``printable`` leaves no
  control character.
- ``docker-config``: ``parse_auth_config`` (a docker client config.json) raises only
  ``CredentialsError`` and keys its entries by normalised host; ``key_host`` never
  raises; ``parse_mirror`` raises only ``UsageError`` and what it returns parses
  back to itself.
- ``oci-index``: ``descriptor_problem`` (an existing index.json) never raises, and
  ``merge`` of the descriptors it accepts gives each name to exactly one entry.
- ``manifest`` also: a Docker manifest that parses becomes an OCI manifest
  (``oci_manifest``) that parses to the same config and layers.

Seeds are the test images of tests/frozen, built at run time.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable

from dind.errors import UsageError
from dind.frozen import redact
from dind.frozen.auth import parse_challenge
from dind.frozen.credentials import CredentialsError, auth_host, key_host, parse_auth_config
from dind.frozen.errors import RegistryError, VerificationError, printable
from dind.frozen.jsondoc import parse_json
from dind.frozen.layout import entry_problem
from dind.frozen.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1,
    ImageManifest,
    Index,
    parse_config,
    parse_manifest,
    select_platform,
)
from dind.frozen.ocilayout import REF_NAME, OciImage, descriptor_problem, merge, oci_manifest
from dind.frozen.platform import Platform, parse_platform
from dind.frozen.reference import parse_digest, parse_reference, parse_repo_tag
from dind.frozen.registry import parse_token
from dind.frozen.retry import parse_retry_after
from dind.frozen.sources import parse_mirror
from tests.frozen import images
from tests.fuzz.runner import BIG, Target, repeat_lines

CONTENT_TYPES = (
    DOCKER_MANIFEST,
    DOCKER_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
    "application/json",
    "",
    SCHEMA1[0],
    f"{DOCKER_MANIFEST}; charset=utf-8",
)
PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm", "v7"), Platform("", ""))
_BLOB_PATH = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# -- manifest: the first byte picks the Content-Type header, the rest is the body


def check_manifest(data: bytes) -> None:
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)] if data else ""
    body = data[1:]
    try:
        parsed = parse_manifest(body, content_type, "fuzz")
        if isinstance(parsed, Index):
            descriptors = list(parsed.manifests)
            for wanted in PLATFORMS:
                descriptors.append(select_platform(parsed, wanted, "fuzz"))
        else:
            descriptors = [parsed.config, *parsed.layers]
            _check_oci_form(body, parsed)
        for desc in descriptors:
            assert _BLOB_PATH.fullmatch(desc.digest), desc
            assert isinstance(desc.size, int) and desc.size >= 0, desc
    except VerificationError:
        pass
    try:
        config = parse_config(body, "fuzz")
    except VerificationError:
        return
    assert all(isinstance(d, str) for d in config.diff_ids)


def _check_oci_form(body: bytes, parsed: ImageManifest) -> None:
    """The layout's OCI form of a manifest names the same blobs."""
    converted, media_type = oci_manifest(body, parsed.media_type)
    again = parse_manifest(converted, media_type, "fuzz")
    assert isinstance(again, ImageManifest), again
    assert again.media_type == OCI_MANIFEST or converted == body
    assert [d.digest for d in (again.config, *again.layers)] == [
        d.digest for d in (parsed.config, *parsed.layers)
    ]


def manifest_seeds() -> list[bytes]:
    layer = images.layer({"f": b"x"})
    amd = images.image([layer, layer])
    arm = images.image([layer], arch="arm", variant="v7", oci=True)
    found = []
    for img in (amd, arm):
        found.append(bytes([CONTENT_TYPES.index(img.media_type)]) + img.manifest)
        found.append(bytes([CONTENT_TYPES.index("")]) + img.config)
    for oci in (True, False):
        media_type, body = images.index([amd, arm], oci=oci)
        found.append(bytes([CONTENT_TYPES.index(media_type)]) + body)
    return found


def grow_json(data: bytes, prefix: int = 0) -> list[bytes]:
    """~1 MB versions of a JSON input: its longest list repeated, and padding."""
    head, body = data[:prefix], data[prefix:]
    grown = [head + body + b" " * BIG, head + repeat_lines(body)]
    try:
        doc = json.loads(body)
    except ValueError:
        return grown
    lists = [v for v in (doc.values() if isinstance(doc, dict) else [doc]) if isinstance(v, list)]
    if lists:
        longest = max(lists, key=len)
        if longest:
            unit = len(json.dumps(longest[0])) + 1
            longest *= max(1, BIG // unit // len(longest))
            grown.append(head + json.dumps(doc).encode())
    return grown


def deep_json() -> list[bytes]:
    half = BIG // 2
    return [b"[" * half + b"]" * half, b'{"a":' * (BIG // 5), b"1" * BIG, b'"' + b"x" * BIG + b'"']


# -- reference


def check_reference(data: bytes) -> None:
    text = _text(data)
    try:
        ref = parse_reference(text)
    except UsageError:
        pass
    else:
        assert parse_reference(str(ref)) == ref, (text, ref)
        if ref.repo_tag:
            assert parse_repo_tag(ref.repo_tag) == parse_reference(ref.repo_tag), ref
        assert all(c.isascii() for c in ref.repository + (ref.tag or "")), ref
    others: tuple[Callable[[str], object], ...] = (parse_repo_tag, parse_digest, parse_platform)
    for parse in others:
        with contextlib.suppress(UsageError):
            parse(text)


def reference_seeds() -> list[bytes]:
    digest = "sha256:" + "ab" * 32
    texts = [
        "busybox",
        "busybox:1.36",
        f"busybox:1.36@{digest}",
        f"busybox@{digest}",
        "docker.io/library/debian:bookworm-slim",
        "index.docker.io/foo/bar:x",
        "localhost:5000/a/b/c:v1.2-rc_3",
        "[::1]:5000/foo:bar",
        "Registry/foo",
        "a__b-c---d/e.f",
        "ghcr.io/o/r:t",
        "linux/arm64/v8",
        "sha512:" + "0" * 128,
    ]
    return [t.encode() for t in texts]


def grow_reference(data: bytes) -> list[bytes]:
    unit = data or b"a"
    return [
        unit * (BIG // len(unit)),
        b"a/" * (BIG // 2) + data,
        b"host." * (BIG // 5) + b"/" + data,
        data + b":" + b"t" * BIG,
    ]


# -- registry text: JSON documents, tokens, challenges, Retry-After, messages


def _present(rel: str) -> bool:
    return rel.startswith("blobs/")


def check_registry_text(data: bytes) -> None:
    text = _text(data)
    try:
        doc = parse_json(data)
    except ValueError:
        pass
    else:
        json.dumps(doc)
        for entry in [doc, *(doc if isinstance(doc, list) else [])]:
            problem = entry_problem(entry, _present)
            assert problem is None or isinstance(problem, str)
    with contextlib.suppress(RegistryError):
        parse_token(data, "fuzz")
    challenge = parse_challenge(text)
    assert challenge.scheme == challenge.scheme.lower()
    seconds = parse_retry_after(text, now=0.0)
    assert seconds is None or seconds >= 0 or seconds != seconds
    assert not _CONTROL.search(printable(text))


def registry_text_seeds() -> list[bytes]:
    entry = {
        "Config": "blobs/sha256/" + "c" * 64,
        "RepoTags": ["busybox:1.36", "localhost:5000/a:b"],
        "Layers": ["blobs/sha256/" + "a" * 64],
        "LayerSources": {"sha256:" + "a" * 64: {"size": 1, "digest": "sha256:" + "a" * 64}},
    }
    docs = [
        [entry, {**entry, "RepoTags": None}],
        {"token": "eyJhbGciOi.eyJzdWIiOi.sig", "expires_in": 300, "issued_at": "2024-01-01"},
        {"access_token": "opaque", "expires_in": 1e308},
        {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}]},
    ]
    texts = [
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"',
        'Bearer realm="a\\"b", error=insufficient_scope',
        'Basic realm="Registry Realm"',
        "120",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "line\nbreak\x1b[31m\u2028",
    ]
    return [json.dumps(d).encode() for d in docs] + [t.encode() for t in texts]


# -- docker-config: a docker client config.json, registry hosts, --mirror URLs


def check_docker_config(data: bytes) -> None:
    try:
        config = parse_auth_config(data, "fuzz")
    except CredentialsError:
        pass
    else:
        for host, creds in config.auths.items():
            assert auth_host(host) == host, host
            assert creds.password or creds.identity_token
        assert all(isinstance(name, str) for name in config.helpers.values())
    finally:
        redact.forget()  # secrets registered while parsing; one input, one run
    text = _text(data)
    assert auth_host(key_host(text)) == key_host(text)
    for insecure in (False, True):
        try:
            url = parse_mirror(text, insecure)
        except UsageError:
            continue
        assert parse_mirror(url, insecure) == url, (text, url)
        assert url.startswith(("http://", "https://")) and not url.endswith("/"), url


def docker_config_seeds() -> list[bytes]:
    docs = [
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
                "registry.example:5000": {"username": "u", "password": "p"},
                "http://127.0.0.1:5000/v2/": {"identitytoken": "t"},
                "store.example": {},
            },
            "credHelpers": {"gcr.io": "gcloud"},
            "credsStore": "desktop",
            "HttpHeaders": {"User-Agent": "x"},
        },
        {"auths": {"a": {"auth": "bm9jb2xvbg=="}}},
    ]
    texts = [
        "https://mirror.gcr.io",
        "http://127.0.0.1:5000/prefix/",
        "mirror.example:443",
        "[::1]:5000",
        "https://user:pw@m.example/?q#f",
    ]
    return [json.dumps(d).encode() for d in docs] + [t.encode() for t in texts]


# -- oci-index: an existing index.json


def check_oci_index(data: bytes) -> None:
    try:
        doc = parse_json(data)
    except ValueError:
        return
    entries = doc.get("manifests") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        return
    accepted = []
    for entry in entries:
        problem = descriptor_problem(entry, _present)
        assert problem is None or isinstance(problem, str)
        if problem is None:
            accepted.append(entry)
    new = OciImage("sha256:" + "a" * 64, 1, OCI_MANIFEST, (("x:1", "docker.io/library/x:1"),))
    merged = merge(accepted, [new])
    json.dumps(merged)
    names = [a.get(REF_NAME) for e in merged if isinstance(a := e.get("annotations"), dict)]
    assert names.count("x:1") == 1


def oci_index_seeds() -> list[bytes]:
    manifest = {
        "mediaType": OCI_MANIFEST,
        "digest": "sha256:" + "b" * 64,
        "size": 500,
        "annotations": {REF_NAME: "x:1", "io.containerd.image.name": "docker.io/library/x:1"},
    }
    docs = [
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [manifest, {**manifest, "annotations": {}}],
        },
        {"manifests": [{"mediaType": DOCKER_MANIFEST, "digest": "sha512:" + "c" * 128, "size": 1}]},
    ]
    return [json.dumps(d).encode() for d in docs]


TARGETS = {
    "manifest": Target(
        check=check_manifest,
        seeds=manifest_seeds,
        grow=lambda data: grow_json(data, prefix=1),
        big=lambda: [bytes([i]) + doc for i in range(len(CONTENT_TYPES)) for doc in deep_json()],
    ),
    "reference": Target(check=check_reference, seeds=reference_seeds, grow=grow_reference),
    "registry-text": Target(
        check=check_registry_text,
        seeds=registry_text_seeds,
        grow=grow_json,
        big=deep_json,
    ),
    "docker-config": Target(
        check=check_docker_config, seeds=docker_config_seeds, grow=grow_json, big=deep_json
    ),
    "oci-index": Target(
        check=check_oci_index, seeds=oci_index_seeds, grow=grow_json, big=deep_json
    ),
}
