"""aegir: the hosting collective's hypervisor runbook as Invoke tasks.

Run locally or over SSH (Fabric) on one host or the whole fleet; see README.md.
"""

__version__ = "0.1.0"
