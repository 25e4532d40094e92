"""``python -m assistant``: the same CLI as the ``knee-assistant`` script."""

from .cli import main

raise SystemExit(main())
