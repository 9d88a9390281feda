"""How committed tokens are produced for one request: the speculation state, the pipeline policy and the loops."""
