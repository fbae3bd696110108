"""``python -m aegir`` is the same program as ``inv`` and ``aegir``."""

from aegir.cli import main

main()
