"""Hyperparameter studies (Optuna): storage from config and the ``gwpe sweep`` study of the teacher family."""
