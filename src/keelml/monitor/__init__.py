"""Production monitoring: drift, live performance, alerts (arrives with the monitoring release)."""
