"""Retraining: each model kind trained from the worker's state (or an events file), judged against the
live version on the same held-out time, and released (`retrain`); one module per kind's training."""
