"""Debian updates, as the runbook does them: review, tell users, apply, check.

- `config`: the inventory's ``update:`` section (crucial units, notifier).
- `scripts`: which units a package's maintainer scripts restart on upgrade.
- `classify`: docker / crucial / reboot / security / other, with reasons.
- `review`: the facts of one host (apt-get -s, dpkg -S, systemctl show) and its review.
- `records`: what is remembered on the host (review, announcement, apply) and the checks on it.
- `notify`: the announcement's text and its notifiers (command on the host, HTTP POST).
- `install`: the one gated script that installs exactly the reviewed versions, and dpkg's state compared.
- `apply`: the plan (fresh review, installable alone, announced), the install and the checks after it.

The facts (commands and parsers) are in `aegir.update.apt`; the tasks in `aegir.tasks.update`.
"""
