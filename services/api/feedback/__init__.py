"""Feedback on a job's answer: ``POST``/``GET /v1/jobs/{id}/feedback``."""
