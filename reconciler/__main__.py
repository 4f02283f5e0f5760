"""`python -m reconciler` runs the qrm command line."""

from reconciler.cli import main

main()
