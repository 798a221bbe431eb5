"""``chatq train evaluate``: a base model and its fine-tuned versions on the held-out split.

- ``facts``: whether an answer states the facts a correct answer must (exact-fact accuracy).
- ``answers``: the answers the worker would serve, from its own engine and prompt builder.
- ``perplexity``: how surprised the PyTorch reference model is by the reference answers.
- ``held_out``: one model on the held-out examples (``evaluate_model``) and its figures.
- ``compare``: base against fine-tuned side by side, with ``chatq eval`` runs when given.
- ``commands``: the ``evaluate`` command line.
"""
