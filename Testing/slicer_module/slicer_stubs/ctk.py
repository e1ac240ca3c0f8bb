"""Stand-in for PythonQt's ``ctk`` module (import-time only)."""
