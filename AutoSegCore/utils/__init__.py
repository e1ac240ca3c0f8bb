"""Small shared helpers: atomic writes, device choice, hashing."""
