"""The log anomaly detector service."""
