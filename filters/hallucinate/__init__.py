"""Class hallucination: activation maximisation, class dreams, adversarial images and universal class noise."""
