"""Storage: keys and crypto, the content-addressed artifact store, the metadata database."""
