"""The user database parsers, on the files of the dev image (tests/fixtures/rootless/image-etc:
its /etc/passwd, /etc/group, /etc/subuid and /etc/subgid as built) and on what other
systems write there."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from dind import userdb

ETC = Path(__file__).parent / "fixtures" / "rootless" / "image-etc"


def read(name: str) -> str:
    return (ETC / name).read_text()


def test_the_images_rootless_user() -> None:
    users = userdb.parse_passwd(read("passwd"))
    assert len(users) == 19
    user = userdb.find_user(users, "rootless")
    assert user == userdb.User("rootless", 1000, 1000, "/home/rootless")
    assert userdb.find_user(users, 1000) == user
    assert userdb.find_user(users, 0) == userdb.User("root", 0, 0, "/root")
    assert userdb.find_user(users, "nosuchuser") is None
    assert userdb.supplementary_gids(read("group"), user) == (1000,)


def test_the_images_subordinate_ranges() -> None:
    user = userdb.User("rootless", 1000, 1000, "/home/rootless")
    for name in ("subuid", "subgid"):
        ranges = userdb.ranges_of(userdb.parse_subids(read(name)), user)
        assert ranges == [userdb.SubIds("rootless", 100000, 65536)]
        assert str(ranges[0]) == "100000-165535"
    nobody = userdb.User("nobody", 65534, 65534, "/nonexistent")
    assert userdb.ranges_of(userdb.parse_subids(read("subuid")), nobody) == []


def test_ranges_by_uid_and_several_lines() -> None:
    """shadow's newuidmap accepts the owner by name or by UID, and every line counts."""
    text = "# comment\nalice:100000:65536\n1000:200000:1000\nbob:300000:65536\n\n"
    user = userdb.User("alice", 1000, 1000, "/home/alice")
    assert [str(r) for r in userdb.ranges_of(userdb.parse_subids(text), user)] == [
        "100000-165535",
        "200000-200999",
    ]


def test_malformed_lines_are_ignored_as_the_c_library_ignores_them() -> None:
    passwd = (
        "root:x:0:0:root:/root:/bin/bash\n"
        "short:x:1\n"
        "digits:x:²:1::/h:/bin/sh\n"  # not ASCII digits: int() would take it
        "+nisplus:::::: \n"
        "big:x:4294967295:1::/h:/bin/sh\n"  # (uid_t)-1 is no uid
        "ok:x:1000:1000::/home/ok:/bin/sh\n"
    )
    assert [u.name for u in userdb.parse_passwd(passwd)] == ["root", "ok"]
    subids = "a:1:0\nb:x:1\nc:4294967290:100\nd:10:20\n"
    assert userdb.parse_subids(subids) == [userdb.SubIds("d", 10, 20)]


def test_supplementary_groups_from_membership() -> None:
    group = "docker:x:101:alice,bob\nwheel:x:10:alice\nusers:x:100:\nalice:x:1000:\n"
    alice = userdb.User("alice", 1000, 1000, "/home/alice")
    assert userdb.supplementary_gids(group, alice) == (1000, 101, 10)


@given(st.text())
def test_any_text_parses_without_raising(text: str) -> None:
    userdb.parse_passwd(text)
    userdb.parse_subids(text)
    userdb.supplementary_gids(text, userdb.User("x", 1, 1, "/"))
