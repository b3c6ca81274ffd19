"""Models: leak-free features from the contract, the catalog, training, evaluation, safe persistence."""
