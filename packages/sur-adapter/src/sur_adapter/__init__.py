"""Semantic understanding and reasoning adapter for text-to-image diffusion."""
