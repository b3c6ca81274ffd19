"""The `keel` command: thin modules that parse arguments and call the library."""
