"""Mirror Gradient training for multimodal recommenders on RecBole."""
