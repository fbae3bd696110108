"""aegir's tasks: ``inv --list`` shows them, ``inv -H hyp1 <task>`` targets one host."""

from aegir.tasks import namespace  # noqa: F401
