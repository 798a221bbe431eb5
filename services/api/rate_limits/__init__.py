"""Limits per key that hold across every API process: token buckets and open waits."""
