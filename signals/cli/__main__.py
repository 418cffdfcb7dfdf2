"""`python -m signals.cli`: the same command as the `signals` console script (runs this checkout's code)."""

from signals.cli import main

main()
