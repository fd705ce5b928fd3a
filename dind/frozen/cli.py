"""``dind-frozen-images DIR IMAGE...``: the command line, and the one place exit codes live.

0 done; 1 a registry, network, verification or disk failure that retries did not cure
(a refused password included); 2 a usage error: a bad option, reference or
``--mirror``, or credentials that cannot be read (an auth file that is not JSON, a
FIFO or a symlink out of its directory, a credential helper missing or failing);
130 interrupted. Every failure is one line on stderr, never a traceback, whatever
the registry or the output directory held, and no line ever shows a secret.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click

from dind.errors import DindError, UsageError
from dind.frozen.errors import printable
from dind.frozen.platform import host_platform, parse_platform
from dind.frozen.redact import forget, redact, redact_value
from dind.log import DEBUG, ERROR, INFO, Log

TYPE_CHECKING = False
if TYPE_CHECKING:
    import httpx

    from dind.frozen.credentials import CredentialStore
    from dind.frozen.reference import Reference
    from dind.frozen.registry import Registry
    from dind.frozen.retry import RetryPolicy
    from dind.frozen.sources import Sources

PROG = "dind-frozen-images"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@click.command(name=PROG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--platform",
    "platform_text",
    metavar="OS/ARCH[/VARIANT]",
    help="Platform to pick from multi-platform images (default: this machine's).",
)
@click.option(
    "--registry",
    metavar="URL",
    help="Fetch every image from this registry instead; names and tags are kept.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["docker", "oci"]),
    default="docker",
    show_default=True,
    help="docker: a `docker load` directory; oci: an OCI image layout (skopeo, containerd).",
)
@click.option(
    "--mirror",
    "mirrors",
    metavar="URL",
    multiple=True,
    envvar="DIND_FROZEN_MIRRORS",
    help="Ask this registry mirror first for content named by digest (repeatable; "
    "in order, then the origin). Default: $DIND_FROZEN_MIRRORS, space-separated.",
)
@click.option(
    "--mirror-tags", is_flag=True, help="Let mirrors answer tags too (default: the origin only)."
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    envvar="DIND_FROZEN_CACHE",
    help="Blob cache shared by runs and output directories (default: $DIND_FROZEN_CACHE; none).",
)
@click.option(
    "--auth-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Docker client config.json with credentials "
    "(default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json).",
)
@click.option("--username", metavar="NAME", help="User for the images' registry.")
@click.option("--password-stdin", is_flag=True, help="Read the password for --username from stdin.")
@click.option(
    "--retries",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Attempts per HTTP request (a resumed body counts as one).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1, max=32),
    default=4,
    show_default=True,
    help="Blobs downloaded in parallel.",
)
@click.option("--insecure", is_flag=True, help="Talk plain HTTP to registries (local ones).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds without data before a connection counts as failed.",
)
@click.option(
    "--backoff",
    type=click.FloatRange(min=0.0),
    default=1.0,
    show_default=True,
    help="First delay between attempts in seconds; doubles each time.",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("-q", "--quiet", is_flag=True, help="Errors only.")
@click.option("-v", "--verbose", count=True, help="Debug detail: every blob, fetched or reused.")
def command(
    directory: Path,
    images: tuple[str, ...],
    platform_text: str | None,
    registry: str | None,
    output_format: str,
    mirrors: tuple[str, ...],
    mirror_tags: bool,
    cache: Path | None,
    auth_file: Path | None,
    username: str | None,
    password_stdin: bool,
    retries: int,
    jobs: int,
    insecure: bool,
    timeout: float,
    backoff: float,
    log_format: str,
    quiet: bool,
    verbose: int,
) -> None:
    """Download IMAGES ([REGISTRY/]NAME[:TAG][@DIGEST]) into DIRECTORY for `docker load`.

    Re-running continues where a failed run stopped; load the result with
    `tar -C DIRECTORY -c . | docker load`.
    """
    from dind.frozen.freeze import Freezer
    from dind.frozen.progress import Progress
    from dind.frozen.reference import parse_reference
    from dind.frozen.registry import endpoint_for, make_client
    from dind.frozen.retry import RetryPolicy
    from dind.frozen.sources import Source, Sources, parse_mirrors

    log = RedactingLog(
        ERROR if quiet else DEBUG if verbose else INFO, log_format, "dind-frozen-images"
    )
    refs = [parse_reference(text) for text in images]
    wanted = parse_platform(platform_text) if platform_text else host_platform()
    mirror_urls = parse_mirrors(mirrors, insecure)
    endpoints = [endpoint_for(ref.registry, registry, insecure) for ref in refs]
    origins = set(endpoints)
    store = _credentials(auth_file, username, password_stdin, origins)
    policy = RetryPolicy(attempts=retries, backoff=backoff)
    cancel = threading.Event()
    progress = Progress(sys.stderr, enabled=not quiet and log_format == "text" and _tty())
    with make_client(timeout, jobs) as client:
        # Credentials are looked up (helpers run) before anything is downloaded.
        once = RetryPolicy(attempts=1, backoff=backoff)
        mirror_sources = tuple(
            Source(_registry(url, client, once, cancel, store), mirror=True) for url in mirror_urls
        )
        registries: dict[str, Registry] = {}
        pairs: list[tuple[Reference, Sources]] = []
        for ref, endpoint in zip(refs, endpoints, strict=True):
            if endpoint not in registries:
                registries[endpoint] = _registry(endpoint, client, policy, cancel, store)
            origin = Source(registries[endpoint], mirror=False)
            pairs.append((ref, Sources(origin, mirror_sources, mirror_tags)))
        freezer = Freezer(
            directory,
            wanted,
            platform_explicit=platform_text is not None,
            jobs=jobs,
            log=log,
            progress=progress,
            cancel=cancel,
            output_format=output_format,
            cache=cache,
        )
        try:
            summary = freezer.run(pairs)
        except BaseException:
            cancel.set()
            raise
        finally:
            progress.close()
    from dind.frozen.progress import human

    rate = summary.downloaded_bytes / summary.seconds if summary.seconds else 0.0
    by_source = ", ".join(f"{human(n)} from {name}" for name, n in summary.sources.items() if n)
    log.info(
        f"froze {summary.images} image(s) into {directory}: {summary.blobs} blobs, "
        f"{summary.downloaded_blobs} downloaded ({human(summary.downloaded_bytes)}"
        f"{': ' + by_source if by_source else ''}), "
        f"{summary.reused_blobs} already present ({human(summary.reused_bytes)})"
        + (
            f", {summary.cached_blobs} from the cache ({human(summary.cached_bytes)})"
            if cache is not None
            else ""
        )
        + f"; {summary.seconds:.1f} s, {human(rate)}/s",
        images=summary.images,
        blobs=summary.blobs,
        downloaded_blobs=summary.downloaded_blobs,
        downloaded_bytes=summary.downloaded_bytes,
        reused_blobs=summary.reused_blobs,
        reused_bytes=summary.reused_bytes,
        cached_blobs=summary.cached_blobs if cache is not None else None,
        cached_bytes=summary.cached_bytes if cache is not None else None,
        sources=summary.sources,
        seconds=round(summary.seconds, 3),
    )


def _registry(
    endpoint: str,
    client: httpx.Client,
    policy: RetryPolicy,
    cancel: threading.Event,
    store: CredentialStore,
) -> Registry:
    from dind.frozen.registry import Registry, host_of

    return Registry(endpoint, client, policy, cancel, store.for_host(host_of(endpoint)))


def _credentials(
    auth_file: Path | None, username: str | None, password_stdin: bool, origins: set[str]
) -> CredentialStore:
    """Where credentials come from this run: ``--username``/``--password-stdin`` for the one
    origin registry, and the docker client's config.json."""
    import os

    from dind.frozen.credentials import (
        Credentials,
        CredentialStore,
        default_auth_file,
        parse_auth_config,
        password_from,
        read_auth_file,
    )
    from dind.frozen.registry import host_of

    override = None
    host = ""
    if username is not None or password_stdin:
        if username is None or not password_stdin:
            raise UsageError("--username and --password-stdin go together")
        if len(origins) != 1:
            raise UsageError(
                "--username: the images come from several registries "
                f"({', '.join(sorted(host_of(o) for o in origins))}); use --auth-file instead"
            )
        override = Credentials(username, password_from(sys.stdin), origin="--password-stdin")
        host = host_of(next(iter(origins)))
    path = auth_file or default_auth_file(os.environ)
    data = read_auth_file(path, required=auth_file is not None)
    config = parse_auth_config(data, str(path)) if data is not None else None
    return CredentialStore(config, override, host)


class RedactingLog(Log):
    """``Log`` that masks every secret the run holds, in messages and in JSON fields."""

    def log(self, level: int, msg: str, fields: dict[str, object]) -> None:
        super().log(level, redact(msg), {k: redact_value(v) for k, v in fields.items()})


def _tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command and map every outcome to an exit status."""
    forget()
    log = RedactingLog(
        ERROR, _format_from(argv if argv is not None else sys.argv[1:]), "dind-frozen-images"
    )

    def fail(status: int, message: str, kind: str) -> int:
        log.error(printable(message), kind=kind)
        return status

    try:
        command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else str(err), err=True)
        return EXIT_USAGE
    except click.UsageError as err:
        return fail(EXIT_USAGE, f"{err.format_message()} (see {PROG} --help)", "usage")
    except UsageError as err:
        return fail(EXIT_USAGE, str(err), "usage")
    except DindError as err:
        return fail(EXIT_FAILURE, str(err), type(err).__name__)
    except OSError as err:
        # Disk errors are mapped where they happen; this is the backstop for one that
        # was not, so that it still ends as one line and status 1.
        return fail(EXIT_FAILURE, f"{err.filename or ''}: {err.strerror or err}", "StoreError")
    except click.exceptions.Abort:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        log.error("interrupted; partial downloads are kept, run again to resume")
        return EXIT_INTERRUPTED
    except click.ClickException as err:
        return fail(EXIT_USAGE, err.format_message(), "usage")
    return 0


def _format_from(argv: list[str]) -> str:
    """The --log-format given, read before click parses (errors need it too)."""
    for i, arg in enumerate(argv):
        if arg == "--log-format" and i + 1 < len(argv):
            return argv[i + 1] if argv[i + 1] in ("text", "json") else "text"
        if arg.startswith("--log-format="):
            value = arg.partition("=")[2]
            return value if value in ("text", "json") else "text"
    return "text"


if __name__ == "__main__":
    sys.exit(main())
