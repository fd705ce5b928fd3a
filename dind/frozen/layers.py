"""zstd layers: checked against the ``diff_id`` the config lists, unpacked for old engines.

A gzip layer is kept as the registry serves it: its digest is checked here, its
``diff_id`` by ``docker load`` (which unpacks it anyway). A zstd layer
(``application/vnd.oci.image.layer.v1.tar+zstd``) is decompressed here, as a
stream, and the digest of the tar it holds must be the config's ``diff_id``: in
the OCI output it then stays zstd; in the ``docker load`` output it is stored as
that uncompressed tar (named by its ``diff_id``): the form ``docker save`` writes,
which any engine loads, whether it reads zstd or not. (Debian 12's Docker 20.10.24
does read zstd layers, tests/frozen/test_zstd.py shows; the tar does not depend on it.)

Decompression uses the ``zstandard`` package (the ``frozen-images`` extra), with
zstd's default window limit, so a hostile frame cannot demand more than 128 MiB.
"""

from __future__ import annotations

import hashlib
import os

from dind.frozen.blobs import CHUNK, INCOMPLETE, Outcome, os_message, relpath
from dind.frozen.errors import FreezeError, StoreError, VerificationError
from dind.frozen.manifest import Descriptor
from dind.frozen.sources import Sources
from dind.frozen.supply import Supply

ZSTD_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)
MAX_WINDOW = 1 << 27
"""zstd's default decoder window limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT): 128 MiB."""


def is_zstd(desc: Descriptor) -> bool:
    return desc.media_type in ZSTD_LAYERS


def tar_digest(fd: int, layer: str, out: int | None = None) -> str:
    """``sha256:`` of the tar a zstd stream (read from ``fd``) holds; also written to ``out``."""
    try:
        import zstandard
    except ImportError:  # pragma: no cover - the extra installs it
        raise FreezeError(
            f"layer {layer} is zstd: that needs the zstandard package "
            "(pip install 'dind[frozen-images]')"
        ) from None
    hasher = hashlib.sha256()
    decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    try:
        with (
            open(fd, "rb", closefd=False) as src,
            decompressor.stream_reader(src, read_size=CHUNK, read_across_frames=True) as reader,
        ):
            while chunk := reader.read(CHUNK):
                hasher.update(chunk)
                if out is not None:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view) :]
    except zstandard.ZstdError as err:
        raise VerificationError(f"layer {layer}: not a valid zstd stream ({err})") from None
    return f"sha256:{hasher.hexdigest()}"


def _mismatch(desc: Descriptor, actual: str, diff_id: str) -> VerificationError:
    return VerificationError(
        f"layer {desc.digest}: its uncompressed content is {actual}, the image config "
        f"lists {diff_id}"
    )


def fetch_zstd(
    supply: Supply, sources: Sources, repository: str, desc: Descriptor, diff_id: str
) -> Outcome:
    """The zstd layer in ``blobs/`` (OCI output), its tar checked against ``diff_id`` first."""
    fd = supply.present(desc)
    if fd is not None:
        try:
            actual = tar_digest(fd, desc.digest)
        finally:
            os.close(fd)
        if actual != diff_id:
            raise _mismatch(desc, actual, diff_id)
        return Outcome(desc.digest, desc.size, 0, reused=True)
    got = supply.obtain(sources, repository, desc)
    try:
        actual = tar_digest(got.fd, desc.digest)
        if actual != diff_id:
            supply.drop(got)
            raise _mismatch(desc, actual, diff_id)
        supply.place(got, desc.digest)
    finally:
        os.close(got.fd)
    return got.outcome


def unpack_zstd(
    supply: Supply, sources: Sources, repository: str, desc: Descriptor, diff_id: str
) -> Outcome:
    """The zstd layer's tar in ``blobs/`` under its ``diff_id`` (the ``docker load`` output).

    The zstd blob (from the cache, or downloaded and verified) is unpacked into
    ``.incomplete`` while the tar is hashed; the tar is renamed into place only if it
    is the ``diff_id``. A zstd blob downloaded into the output is then removed.
    """
    store = supply.out
    present = store.open_verified(diff_id, None)
    if present is not None:
        try:  # an earlier run may have renamed it in and stopped before syncing it
            supply.syncer.submit(present, str(store.root.path / relpath(diff_id)))
        finally:
            os.close(present)
        supply.progress(desc.digest, desc.size)
        return Outcome(desc.digest, desc.size, 0, reused=True)
    got = supply.obtain(sources, repository, desc)
    algo, _, hexpart = diff_id.partition(":")
    tmp = f"{algo}-{hexpart}.tar"
    try:
        with store.root.ensure(INCOMPLETE) as scratch:
            out = scratch.create(tmp)
            try:
                actual = tar_digest(got.fd, desc.digest, out)
                if actual == diff_id:
                    supply.syncer.submit(out, str(scratch.path / tmp))
            except OSError as err:
                err.filename = str(scratch.path / tmp)
                raise StoreError(os_message(err)) from None
            finally:
                os.close(out)
            if actual != diff_id:
                scratch.unlink(tmp)
                raise _mismatch(desc, actual, diff_id)
        store.commit(tmp, diff_id)
    finally:
        os.close(got.fd)
        supply.drop(got)
    return got.outcome


def layer_path(desc: Descriptor, diff_id: str) -> str:
    """Where the ``docker load`` layout points for a layer: its unpacked tar when it is
    zstd, else the blob."""
    return relpath(diff_id) if is_zstd(desc) else relpath(desc.digest)
