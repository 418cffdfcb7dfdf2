"""`python -m signals ...`: the `signals` command where its console script is not installed (inside the image)."""

from signals.cli import main

main()
