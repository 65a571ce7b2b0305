"""Monitoring: production requests compared with the data that trained each champion."""
