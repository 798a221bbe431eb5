"""The messaging contract: exchanges and queues, message schemas, broker connections."""
