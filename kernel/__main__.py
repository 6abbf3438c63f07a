"""``python -m kernel`` runs the CLI."""

from ._cli import main

raise SystemExit(main())
