"""Serving registered models over HTTP (the prediction server arrives with the deployment release)."""
