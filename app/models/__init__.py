"""Table models (Qt) and their declared columns (no Qt)."""
