"""Training, inference, metrics and post-processing (epochs are the fidelity unit of every search)."""
