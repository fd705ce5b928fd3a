"""dind: a docker-in-docker container entrypoint.

Kept empty on purpose: this module is imported on every container start.
"""

__version__ = "0.1.0"
