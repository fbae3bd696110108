"""Compose projects under /srv/core, /srv/apps and /srv/users.

- `commands`: the Compose CLI (v2 ``docker compose`` or v1 ``docker-compose``), detected once per host; commands as data.
- `discovery`: which projects a host has (one tar of every compose file and .env), name selection.
- `state`: what Docker's containers say about a project (pure).
- `status`: one host's status report (one Docker call), the fleet table.
- `plan` (pure: which projects, in which order, which command), `steps` (the lifecycle `Action`: act and
  verify), `report` (tables and JSON): up/down/stop/restart/pull/update.
- `lint`: is a compose file publishable (site values only through .env)?
- `templates`: new projects from /srv/templates.
"""
