"""batch endpoints: many jobs submitted, followed and answered together."""
