# The dind image: a nested Docker daemon behind the dind entrypoint, a drop-in for
# docker:dind (same variables, certificates layout and ports) and moby's dev flow.
#
#   scripts/build-image [--base IMAGE] [--tag TAG]    # offline: wheelhouse + docker build
#   docker build --build-arg DEBIAN_SUITE=bookworm .  # Debian 12 (Docker 20.10) instead
#   docker run --privileged IMAGE                     # a nested dockerd (TLS on 2376)
#   docker run --privileged IMAGE --mtu 1400          # dockerd's own flags, docker:dind style
#   docker run --privileged IMAGE --with-dockerd make test   # dockerd beside a command
#   docker run --privileged IMAGE hack/make.sh binary # a build that runs containers
#
# Offline builds: scripts/build-image fills wheelhouse/ on the host (pip wheel) and
# the build installs from it with --no-index, so pip never reaches an index from
# inside the build. Without wheelhouse/ a plain `docker build .` installs from PyPI.
# Stages: runtime (apt) -> build (venv, then dind) -> frozen (optional) -> final.

# The Debian release decides the nested engine: trixie (Debian 13) has docker.io 26
# and Python 3.13; bookworm (Debian 12, docker.io 20.10, out of upstream support)
# is the tested alternative. BASE_IMAGE overrides both (e.g. a local debootstrap).
ARG DEBIAN_SUITE=trixie
ARG BASE_IMAGE=debian:${DEBIAN_SUITE}-slim

FROM ${BASE_IMAGE} AS runtime
# What a nested dockerd needs (docker.io brings containerd, runc, tini, iptables)
# plus python3 for dind. Versions follow the base image's release, so no pins.
# The docker CLI is in docker.io up to Debian 12 and its own package (docker-cli,
# only recommended by docker.io) from Debian 13 on: installed where it exists.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        ca-certificates \
        docker.io \
        iptables \
        python3 \
 && if apt-cache show docker-cli >/dev/null 2>&1; then \
        apt-get install -y --no-install-recommends docker-cli; \
    fi \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log

FROM runtime AS build
# The venv module is needed to build only (no pins: as above).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_CONFIG_FILE=/build/pip.conf \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Dependencies first: this layer changes only with pyproject.toml or the wheels.
# `wheelhous[e]` copies the wheels if wheelhouse/ exists and nothing otherwise.
COPY pyproject.toml wheelhous[e] /build/wheels/
RUN if ls /build/wheels/*.whl >/dev/null 2>&1; then \
        printf '[global]\nno-index = true\nfind-links = /build/wheels\n' >/build/pip.conf; \
    else \
        : >/build/pip.conf; \
    fi \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/build/wheels/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        >/build/requirements.txt \
 && python3 -m venv /opt/dind \
 && /opt/dind/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/dind/bin/pip install --no-cache-dir -r /build/requirements.txt
# Then the project itself (pip byte-compiles what it installs).
COPY pyproject.toml README.m[d] /build/src/
COPY dind /build/src/dind
RUN /opt/dind/bin/pip install --no-cache-dir /build/src \
 && /opt/dind/bin/python -m pip uninstall -y -q pip setuptools \
 && /opt/dind/bin/dind --version

# Optional: images frozen for nested tests (`docker load` them from
# /docker-frozen-images). Off by default: the directory stays empty.
#   --build-arg FROZEN_IMAGES="debian:bookworm-slim busybox:1.36@sha256:..."
FROM build AS frozen
ARG FROZEN_IMAGES=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN mkdir /docker-frozen-images \
 && if [ -n "$FROZEN_IMAGES" ]; then \
        python3 -m venv /opt/frozen \
        && /opt/frozen/bin/pip install --no-cache-dir "/build/src[frozen-images]" \
        && echo "$FROZEN_IMAGES" | xargs /opt/frozen/bin/dind-frozen-images /docker-frozen-images; \
    fi

FROM runtime
# The rootless nested daemon (DIND_ROOTLESS=1, README "Rootless"): rootlesskit with
# slirp4netns, and newuidmap/newgidmap with file capabilities instead of setuid
# root (without --privileged a setuid-root helper lacks CAP_SYS_ADMIN over the new
# user namespace: EPERM on uid_map); the user `rootless` (uid 1000) with
# subordinate ID ranges, its runtime directory, its data root (a volume, below), and a
# docker CLI context for its socket (`docker run --user 1000`: no /var/run/docker.sock;
# the docker CLI names a context's directory by the SHA-256 of its name, "rootless").
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        iproute2 libcap2-bin rootlesskit slirp4netns uidmap \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
 && chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap \
 && setcap cap_setuid=ep /usr/bin/newuidmap \
 && setcap cap_setgid=ep /usr/bin/newgidmap \
 && useradd --uid 1000 --user-group --create-home --shell /bin/sh rootless \
 && echo rootless:100000:65536 >/etc/subuid \
 && echo rootless:100000:65536 >/etc/subgid \
 && install -d -o rootless -g rootless -m 0700 /run/user/1000 \
 && install -d -o rootless -g rootless -m 0755 \
        /home/rootless/.local /home/rootless/.local/share /home/rootless/.local/share/docker \
 && context=/home/rootless/.docker/contexts/meta/12b961af5feb3e9d39f93b2cefb9a1a944f18d02cca0cac2f04f5a982240605f \
 && install -d -o rootless -g rootless -m 0700 /home/rootless/.docker \
 && install -d -o rootless -g rootless "$context" \
 && printf '{"currentContext": "rootless"}\n' >/home/rootless/.docker/config.json \
 && printf '{"Name": "rootless", "Metadata": {}, "Endpoints": {"docker": {"Host": "%s"}}}\n' \
        unix:///run/user/1000/docker.sock >"$context/meta.json" \
 && chown -R rootless:rootless /home/rootless/.docker
COPY --from=build /opt/dind /opt/dind
COPY --from=frozen /docker-frozen-images /docker-frozen-images
# docker:dind's conventions: certificates in /certs (the client's in /certs/client, for
# other containers to mount), no arguments or dockerd flags alone mean `dockerd`.
ENV PATH=/opt/dind/bin:$PATH \
    DOCKER_TLS_CERTDIR=/certs \
    DIND_DEFAULT_COMMAND=dockerd
RUN mkdir -p /certs /certs/client \
 && chmod 1777 /certs /certs/client
# The nested daemon's storage must be a volume, not the container's overlay rootfs.
VOLUME /var/lib/docker /home/rootless/.local/share/docker
EXPOSE 2375 2376
HEALTHCHECK --interval=5s --timeout=10s --start-period=60s CMD ["dind", "--ready"]
# Mount the source to build here, as the docker-dev image did.
WORKDIR /src
ENTRYPOINT ["dind"]
CMD ["dockerd"]
