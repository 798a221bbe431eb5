"""The admin API for a tenant's keys: list, issue, revoke, rotate."""
