"""Frozen images: download images from a registry into a ``docker load``-able directory.

Not part of the entrypoint and never imported by it: this is a build-time tool with its
own optional dependencies (``pip install 'dind[frozen-images]'``). The pipeline, one
module per step: ``reference`` (parse names) -> ``registry``/``auth`` (HTTP API v2)
-> ``manifest`` and ``platform`` (choose the image) -> ``blobs`` (verified,
resumable downloads) -> ``layout`` (the ``docker save`` directory) -> ``freeze``
(orchestration) -> ``cli``.
"""
