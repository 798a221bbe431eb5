"""The OpenAPI document of the HTTP API, generated from the app's routes and pydantic models."""
