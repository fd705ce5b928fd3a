"""Frozen images: download images from a registry into a ``docker load``-able directory.

Not part of the entrypoint and never imported by it: this is a build-time tool with its
own optional dependencies (``pip install 'dind[frozen-images]'``). The pipeline, one
module per step: ``reference`` (parse names) -> ``registry``/``auth`` (HTTP API v2)
-> ``manifest`` and ``platform`` (choose the image) -> ``blobs`` (verified,
resumable downloads) -> ``layout`` (the ``docker save`` directory) -> ``freeze``
(orchestration) -> ``cli``.

Registries and the output directory are untrusted input (the tool runs as root):
``jsondoc`` is the one JSON parser (depth-bounded), ``registry.read_body`` the one
bounded body read, and ``outdir`` the one way into the output directory (nothing
inside it is followed).
"""
