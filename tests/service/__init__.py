"""Tests against real `bentoml serve` processes over HTTP."""
