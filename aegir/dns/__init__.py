"""DNS: the zones implied by the inventory and the projects' ``x-aegir: dns:``, and their check.

`settings` (hosts.yml's ``dns:``), `services` (a project's names), `facts`
(what a host is asked: its projects' names, on a mounted /srv only), `plan`
(pure: the zones), `zonefile` (RFC 1035 text), `steps` (the zone files written
on the operator's machine, read back), `check` (a server's answers), `report`
(tables and JSON).
"""
