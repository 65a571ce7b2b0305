"""API request pattern analysis on HTTP access logs (default data: a simulator)."""
