"""Readers of the data formats gpdiff understands, one module per format."""
