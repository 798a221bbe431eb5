"""jobs endpoints."""
