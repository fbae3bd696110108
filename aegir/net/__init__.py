"""Addressing: the fleet's plan from hosts.yml, checked against what each host really has.

`facts` (a host's configured addresses, Docker networks and containers),
`plan` (pure: the addressing table and its problems), `report` (table/JSON).
"""
