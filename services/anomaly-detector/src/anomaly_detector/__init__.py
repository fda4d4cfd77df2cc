"""Anomaly detection on the live per-minute figures of the clickstream."""
