"""Debian updates, as the runbook does them: review, tell users, apply, check.

- `settings`: the inventory's ``update:`` section (crucial units, the notifier of `aegir.notify`).
- `apt`: apt, dpkg and systemctl commands and their pure parsers.
- `facts`: what update reads of a host, as Facts; `read_review`, the review's reads.
- `scripts`: which units a package's maintainer scripts restart on upgrade.
- `classify`: docker / crucial / reboot / security / other, with reasons.
- `records`: what is remembered on the host (review, announcement, apply) and the checks on it.
- `install`: the one gated script that installs exactly the reviewed versions, and dpkg's state compared.
- `plan`: the review's record, the apply's plan and result, the announcement's text (pure).
- `steps`: the Actions (refresh, review, announce, apply): the only code here that changes a host.
- `report`: the tables and JSON of the three tasks.

The tasks are in `aegir.tasks.update`.
"""
