"""Download throughput against a loopback docker-registry, --jobs 1 vs 4. Run by hand:

    .venv/bin/python -m tests.frozen.bench_throughput [--layers 8] [--mb 24] [--repeat 3]

Pushes one image of incompressible layers through the registry API, then times the
real console script freezing it into an empty directory. Not a test (not collected).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.frozen import images
from tests.support.registry import run_registry

CONSOLE = Path(sys.executable).with_name("dind-frozen-images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--mb", type=int, default=24, help="size of each layer in MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frozen-bench-") as tmp:
        root = Path(tmp)
        (root / "registry").mkdir()
        with run_registry(root / "registry") as reg:
            layers = [
                images.layer({f"l{i}": images.noise(args.mb * 1_000_000, i)})
                for i in range(args.layers)
            ]
            img = images.image(layers)
            with httpx.Client(timeout=120) as client:
                images.push(client, reg.url, "bench/image", "latest", img)
            total = sum(len(lay.blob) for lay in layers) + len(img.config)
            print(f"image: {args.layers} layers, {total / 1e6:.1f} MB compressed")
            for jobs in args.jobs:
                rates = []
                for n in range(args.repeat):
                    out = root / f"out-{jobs}-{n}"
                    started = time.monotonic()
                    subprocess.run(
                        [
                            str(CONSOLE),
                            str(out),
                            f"{reg.hostport}/bench/image",
                            "--insecure",
                            "--jobs",
                            str(jobs),
                            "-q",
                        ],
                        check=True,
                    )
                    rates.append(total / 1e6 / (time.monotonic() - started))
                    shutil.rmtree(out)
                shown = ", ".join(f"{r:.0f}" for r in rates)
                print(f"--jobs {jobs}: best {max(rates):.0f} MB/s (runs: {shown} MB/s)")


if __name__ == "__main__":
    main()
