"""``python -m moorage`` → the CLI."""

from moorage.cli.main import main

main()
