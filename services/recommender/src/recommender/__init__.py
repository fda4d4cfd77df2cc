"""Real-time product recommendations from the clickstream."""
