"""Code the chatq services share: configuration, database, messaging contract, logging."""
