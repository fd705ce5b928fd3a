"""DIND_ROOTLESS, --rootless and DIND_ROOTLESS_USER: parsed once, bad values are usage errors."""

from __future__ import annotations

import pytest

from dind.cli import parse
from dind.errors import UsageError
from dind.settings import from_sources


def test_the_variable_and_the_option() -> None:
    assert from_sources(["dockerd"], {}, {"DIND_ROOTLESS": "1"}).rootless is True
    assert from_sources(["dockerd"], {}, {}).rootless is False
    assert parse(["--rootless", "dockerd"]).rootless is True
    settings = from_sources(["dockerd"], {}, {"DIND_ROOTLESS": "yes", "DIND_ROOTLESS_USER": "ci"})
    assert settings.rootless_user == "ci"
    assert from_sources(["dockerd"], {}, {}).rootless_user == "rootless"
    with_dockerd = from_sources(["make"], {"with_dockerd": True}, {"DIND_ROOTLESS": "1"})
    assert with_dockerd.rootless and with_dockerd.daemon_mode
    assert from_sources([], {"check": True}, {"DIND_ROOTLESS": "1"}).rootless


@pytest.mark.parametrize(
    ("command", "env", "said"),
    [
        (["dockerd"], {"DIND_ROOTLESS": "maybe"}, "DIND_ROOTLESS='maybe': expected one of"),
        (["dockerd"], {"DIND_ROOTLESS_USER": "a:b"}, "DIND_ROOTLESS_USER='a:b': not a user name"),
        (["dockerd"], {"DIND_ROOTLESS_USER": ""}, "DIND_ROOTLESS_USER='': not a user name"),
        (["dockerd"], {"DIND_ROOTLESS_USER": "../x"}, "not a user name"),
        (
            ["make", "test"],
            {"DIND_ROOTLESS": "1"},
            "--rootless (DIND_ROOTLESS) is for a nested dockerd: COMMAND dockerd, or "
            "--with-dockerd",
        ),
    ],
)
def test_bad_input_is_a_usage_error(command: list[str], env: dict[str, str], said: str) -> None:
    with pytest.raises(UsageError) as err:
        from_sources(command, {}, env)
    assert said in str(err.value)
