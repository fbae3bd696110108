"""Addressing and the IPsec mesh: the fleet's plan from hosts.yml, checked against what each host really has.

`facts` (a host's configured addresses, Docker networks and containers; its IKE public key, swanctl's
connections and SAs, a ping from a container), `plan` (pure: the addressing table and its problems),
`settings` (a host's ``mesh:`` section), `mesh` (pure: each host's swanctl configuration and plan),
`swanctl` (``swanctl --raw`` read), `check` (pure: net.check's verdict per pair), `steps` (net.keys,
net.mesh), `report` (tables/JSON).
"""
