"""Security and privacy audits of trained models (arrives with the security release)."""
