"""The inference worker: consumes ``chat.inference`` in batches and runs the model."""
