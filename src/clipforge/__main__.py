"""``python -m clipforge`` runs the command line."""

from .cli import main

main()
