"""Creative Leap-of-Thought tuning, self-refinement and inference."""
