"""The ``chatq`` command: run the stack, the demo, build models, manage keys."""
