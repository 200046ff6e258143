"""Extension examples: a user model referenced from candleflow.toml by import path."""
