"""basewatch detector networks, training data, training and evaluation."""
