"""The nested daemon: dockerd mode and --with-dockerd (issues 8, 9)."""
