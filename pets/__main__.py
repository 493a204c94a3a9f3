"""``python -m pets`` runs the command line."""

from pets.cli import main

raise SystemExit(main())
