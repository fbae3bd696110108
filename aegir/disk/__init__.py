"""Disk: where the space goes on each hypervisor (/, /srv, Docker, projects)."""
