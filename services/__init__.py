"""The three chatq services. They never import each other; they share only ``shared``."""
