"""`python -m confctl` is the `confctl` command."""

from confctl.cli import main

main()
