"""keelml: a robust, secure, end-to-end machine-learning pipeline for tabular data."""

__version__ = "0.1.0"
