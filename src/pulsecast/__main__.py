"""``python -m pulsecast`` runs the command line."""

from __future__ import annotations

from pulsecast.cli import main

main()
