"""The spam classifier's service."""
