"""`python -m confmand` is the `confmand` command."""

from confmand.cli import main

main()
