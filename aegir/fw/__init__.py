"""The firewall: an nftables ruleset rendered from the running containers.

- `settings`: a host's ``fw:`` inventory section, validated (file:line errors).
- `model`: pure; ``docker inspect`` data + the host -> the exposures.
- `render`: the exposures + settings -> the ruleset text, through a Jinja2
  template shipped here (``nftables.nft.j2``) or the host's
  ``<srv>/templates/nftables.nft.j2``.
- `safety`: evaluates a ruleset (nft's JSON) for one packet: proves SSH to the
  admin addresses is never dropped, the operator's address and port unknown.
- `knock`: the kernel's answer: real SSH connections from varied sources and
  ports through the whole candidate ruleset, in a scratch network namespace.
- `nft`: the commands (check, atomic apply, listing, the last good ruleset kept
  on the host) and `nft.apply`, which changes nothing on any error.
- `watch`: the event-driven watcher behind ``fw.watch``.
"""
