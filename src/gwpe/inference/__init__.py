"""Likelihood-based inference pieces (reference posteriors for the neural models)."""
