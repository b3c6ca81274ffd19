"""Data plane: sources, the data contract, validation with quarantine, splits."""
