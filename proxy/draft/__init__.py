"""Draft models: propose the next tokens of one sequence on the edge."""
