"""The operator's API for model versions: list them, activate one, go back to the default."""
