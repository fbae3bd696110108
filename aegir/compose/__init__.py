"""Compose projects under /srv/core, /srv/apps and /srv/users.

- `cli`: the Compose CLI (v2 ``docker compose`` or v1 ``docker-compose``), detected once per host; commands as data.
- `discovery`: which projects a host has (one tar of every compose file and .env), name selection.
- `state`: what Docker's containers say about a project (pure).
- `status`: one host's status report (one Docker call), the fleet table.
- `lifecycle`: up/down/restart/pull planned, shown, run and verified.
- `lint`: is a compose file publishable (site values only through .env)?
- `templates`: new projects from /srv/templates.
"""
