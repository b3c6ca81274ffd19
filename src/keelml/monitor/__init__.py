"""Production monitoring: the prediction-log window, drift, live performance, alert rules and actions."""
