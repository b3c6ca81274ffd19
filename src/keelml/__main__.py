"""`python -m keelml` is the same as `keel`."""

from keelml.cli.main import main

main()
