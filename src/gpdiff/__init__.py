"""gpdiff: spatio-temporal few-shot learning by diffusion-generated model parameters (GPD)."""

__version__ = "0.1.0"
