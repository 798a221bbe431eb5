"""Webhook delivery endpoints: inspect a job's deliveries, re-send dead ones."""
