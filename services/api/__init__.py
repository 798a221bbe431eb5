"""The HTTP API (Flask): accepts jobs, answers polls. Never imports torch or onnxruntime."""
