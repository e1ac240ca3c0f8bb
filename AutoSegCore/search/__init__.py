"""Searches as Optuna studies: trials in child processes, resumable, multi-worker; final training; analysis."""
