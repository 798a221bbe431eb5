"""Instruction sets that ship with chatq, as training examples (``training.data.examples``).

``SHOP_INSTRUCTIONS``: questions and short answers about the demo shop Lumen Home (and, for a
smaller share, the Northfield University IT help desk), in English and Chinese, several
wordings per fact, with the facts each answer states; built by ``build_shop_instructions.py``.
"""

from pathlib import Path

SHOP_INSTRUCTIONS = Path(__file__).with_name("shop_instructions.jsonl")
