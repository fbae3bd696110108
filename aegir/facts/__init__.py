"""Read-only probes: a command built by one function + a pure parser -> frozen dataclass.

Parsers are tested on recorded output (tests/unit); nothing here changes a host.
"""
