"""``python -m aegir`` is the same program as ``inv`` and ``aegir`` (`aegir.launch`: warm when asked)."""

from aegir.launch import main

main()
