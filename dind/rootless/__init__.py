"""The rootless nested daemon (``DIND_ROOTLESS``): dockerd as an unprivileged user in rootlesskit.

The same pipeline as the rest of dind, in its own modules: ``facts`` (the evidence
read and what it means, pure), ``detect`` (reads), ``plan`` (pure: decisions, the
root-only actions and the daemon's command line), ``actions`` (those actions,
acting through descriptors, never through a symlink), ``check`` (the ``--check``
view) and ``proxy`` (the port helper a delegated-cgroup daemon needs).
"""
