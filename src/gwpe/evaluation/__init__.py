"""Plots and statistics that people look at."""
