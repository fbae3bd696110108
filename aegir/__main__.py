"""``python -m aegir`` is the same program as ``inv`` and ``aegir``."""

from .cli import main

main()
