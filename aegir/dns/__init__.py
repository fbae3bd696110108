"""DNS: the zones implied by the inventory and the projects' ``x-aegir: dns:``, and their check.

`settings` (hosts.yml's ``dns:``), `services` (a project's names), `plan`
(pure: the zones), `zonefile` (RFC 1035 text), `check` (a server's answers),
`facts` (reading the hosts), `report` (tables and JSON).
"""
