"""Post-processing: stores results and transcripts, delivers webhooks (Celery)."""
