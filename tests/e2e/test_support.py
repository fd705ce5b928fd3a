"""Unit tests of tests/support/dockerd.py parts that need no engine: the runc
wrapper that drops CAP_SYS_RESOURCE, and reading the apt mirror."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.dockerd import apt_mirror, write_runc_wrapper

ALL_CAPS = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]
KINDS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def _fake_runc(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in runc that records its arguments."""
    record = tmp_path / "argv.json"
    runc = tmp_path / "runc"
    runc.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
    )
    runc.chmod(0o755)
    return runc, record


def _caps() -> dict[str, list[str]]:
    return {kind: list(ALL_CAPS) for kind in KINDS}


def _run(wrapper: Path, *args: str, cwd: Path | None = None) -> None:
    subprocess.run([str(wrapper), *args], check=True, cwd=cwd, timeout=30)


def test_wrapper_strips_cap_sys_resource_from_the_bundle_and_passes_args(tmp_path: Path) -> None:
    runc, record = _fake_runc(tmp_path)
    wrapper = write_runc_wrapper(tmp_path / "runc-nosr", runc=str(runc))
    for form in (["--bundle", "B"], ["-b", "B"], ["--bundle=B"]):
        bundle = tmp_path / "B"
        bundle.mkdir(exist_ok=True)
        config = {"ociVersion": "1.0.2", "process": {"capabilities": _caps(), "args": ["sh"]}}
        (bundle / "config.json").write_text(json.dumps(config))
        args = ["--root", "/r", "--log", "/l", "create", *form, "--pid-file", "p", "ctr"]
        _run(wrapper, *args, cwd=tmp_path)
        assert json.loads(record.read_text()) == args
        after = json.loads((bundle / "config.json").read_text())
        for kind in KINDS:
            assert after["process"]["capabilities"][kind] == [
                "CAP_CHOWN",
                "CAP_SYS_ADMIN",
                "CAP_NET_ADMIN",
            ]
        assert after["process"]["args"] == ["sh"]


def test_wrapper_uses_the_working_directory_as_default_bundle(tmp_path: Path) -> None:
    runc, _ = _fake_runc(tmp_path)
    wrapper = write_runc_wrapper(tmp_path / "runc-nosr", runc=str(runc))
    (tmp_path / "config.json").write_text(json.dumps({"process": {"capabilities": _caps()}}))
    _run(wrapper, "run", "ctr", cwd=tmp_path)
    caps = json.loads((tmp_path / "config.json").read_text())["process"]["capabilities"]
    assert all("CAP_SYS_RESOURCE" not in caps[kind] for kind in KINDS)


def test_wrapper_strips_the_exec_process_file(tmp_path: Path) -> None:
    runc, record = _fake_runc(tmp_path)
    wrapper = write_runc_wrapper(tmp_path / "runc-nosr", runc=str(runc))
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["ls"], "capabilities": _caps()}))
    _run(wrapper, "exec", "--process", str(process), "--detach", "ctr")
    assert "CAP_SYS_RESOURCE" not in json.loads(process.read_text())["capabilities"]["bounding"]
    assert json.loads(record.read_text())[:3] == ["exec", "--process", str(process)]


def test_wrapper_leaves_other_commands_and_files_alone(tmp_path: Path) -> None:
    runc, record = _fake_runc(tmp_path)
    wrapper = write_runc_wrapper(tmp_path / "runc-nosr", runc=str(runc))
    config = json.dumps({"process": {"capabilities": _caps()}})
    (tmp_path / "config.json").write_text(config)
    _run(wrapper, "state", "ctr", cwd=tmp_path)
    assert (tmp_path / "config.json").read_text() == config
    assert json.loads(record.read_text()) == ["state", "ctr"]


def test_apt_mirror_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm\nComponents: main\n"
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "deb [signed-by=/k.gpg] https://packages.example/apt stable main\n"
        "deb http://other.example/debian bookworm main\n"
    )
    assert apt_mirror([deb822]) == "http://mirror.example/debian"
    assert apt_mirror([one_line]) == "http://other.example/debian"
    assert apt_mirror([tmp_path / "missing"]) == "http://deb.debian.org/debian"
