"""New experts added to a frozen Mixture-of-Experts LLM for a new modality."""
