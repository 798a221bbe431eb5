"""The operator dashboard: one page over every tenant (``operator`` scope) and the JSON it draws."""
