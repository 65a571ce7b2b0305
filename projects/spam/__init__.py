"""Spam classifier on the SMS Spam Collection (Almeida et al. 2011)."""
