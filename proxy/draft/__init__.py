"""Draft models: propose the next tokens of one sequence on the edge (and how a draft token is drawn: ``draws``)."""
