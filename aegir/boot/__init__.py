"""The start-up runbook after a reboot: unlock LUKS, mount /srv, check it, start Docker, report.

- `facts`: the probes (cryptsetup, findmnt, fstab, losetup, /srv listing, daemon.json) and their parsers.
- `plan`: pure plans and checks for each step, and the systemd guard drop-in.
- `secrets`: the passphrase prompt (terminal or stdin, never argv).
- `steps`: each step run against a host (read facts, plan, act, verify), in one table `STEP_TABLE`.
- `report`: the boot table and JSON.
"""

#: Free space /srv must keep, in percent (an int: Invoke reads the flag by its default's type).
MIN_FREE_PERCENT = 5
#: Seconds to wait for the Docker daemon to answer after starting it.
DOCKER_TIMEOUT = 60
