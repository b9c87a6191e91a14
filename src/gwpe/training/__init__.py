"""Domain-free training pieces: Lightning Trainer from config, resumable checkpoints, MLflow epoch logging."""
