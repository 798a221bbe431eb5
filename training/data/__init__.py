"""Training data: reading the accepted formats, cleaning, splitting and augmenting."""
