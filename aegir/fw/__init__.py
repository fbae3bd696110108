"""The firewall: an nftables ruleset rendered from the running containers.

The house's roles (facts -> plan -> steps -> report):

- `settings`: a host's ``fw:`` inventory section, validated (file:line errors).
- `facts`: what is read of a host: the firewall state (one command), the
  running containers and Docker's bridges (SDK reads), the watcher's unit.
- `plan`: pure; facts -> the host's `Firewall` (exposures and ruleset), what
  fw.apply refuses, what fw.install runs; what acting returned.
- `steps`: the actions, `Apply` and `Install` (act + verify); `apply`, the
  checked atomic apply boot.docker and fw.watch use too.
- `report`: the tables, rulesets, diffs and the JSON envelope of every fw task.

Its pure building blocks:

- `model`: ``docker inspect`` data + the host -> the exposures.
- `render`: the exposures + settings -> the ruleset text, through a Jinja2
  template shipped here (``nftables.nft.j2``) or the host's
  ``<srv>/templates/nftables.nft.j2``.
- `nft`: the nft commands as data (check, atomic load under a lock, listing,
  the last good ruleset kept on the host), the state they read, parsed.
- `delta`: a ruleset read as structure + set elements; whether a change is elements of
  the container sets only, the ``nft -f`` of those elements, every added key checked.
- `safety`: evaluates a ruleset (nft's JSON) for one packet: proves SSH to the
  admin addresses is never dropped, the operator's address and port unknown.
- `knock`: the kernel's answer: real SSH connections from varied sources and
  ports through the whole candidate ruleset, in a scratch network namespace.

And `watch`: the event-driven loop behind ``fw.watch`` (no dry run: it applies
at every change).
"""
