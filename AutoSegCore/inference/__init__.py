"""Inference: sliding windows over a volume, post-processing, and the Predictor that loads a model or ensemble
once and predicts arrays; files and folders are ``AutoSegCore.prediction``'s."""
