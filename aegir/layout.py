"""What lives where under /srv, as the runbook lays it out (shared by every area).

``/srv/conf`` general configuration · ``/srv/docker`` Docker's data-root ·
``/srv/templates`` service templates · ``/srv/core`` infrastructure Compose
projects, started first · ``/srv/apps`` applications · ``/srv/users`` projects
hosted for users. A project folder holds its compose file, ``.env``, ``conf/``,
``data/``, and for a database ``db/`` (its files) and ``wal/`` (its logs).
"""

from __future__ import annotations

#: The folders /srv holds once mounted (``boot.check`` looks for each).
SRV_FOLDERS = ("conf", "docker", "templates", "core", "apps", "users")

#: The folders holding Compose projects, in start order (core first).
PROJECT_KINDS = ("core", "apps", "users")

#: The parts of a project folder whose sizes `disk.report` lists.
PROJECT_PARTS = ("data", "db", "wal")
