"""``chatq train finetune`` and ``chatq train export``: a LoRA adapter trained on chat examples
with the worker's own prompts (``train``), then merged into its base model and built into a
model folder the workers serve (``export``)."""
