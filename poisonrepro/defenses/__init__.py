"""Defences, one module per method; importing this package registers them all."""
