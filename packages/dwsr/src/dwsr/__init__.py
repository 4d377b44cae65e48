"""Difficulty-aware dual-way super-resolution as a BasicSR plug-in."""
