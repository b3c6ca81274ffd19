"""Testing a trained model: held-out metrics, curves, slices, fairness, model tests, the comparison with
production, and the gate. Apart from model fitting (keelml.model), which it may import.
"""
