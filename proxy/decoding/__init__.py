"""How committed tokens are produced for one request: the speculation state, the pipeline policy and the loops.

Each loop is an async generator yielding lists of newly committed token ids. The caller stops
consuming when it has enough (EOS, stop string, max_tokens); closing the generator ends the
verifier session (without waiting). ``speculative`` speculates over the channel, ``alone``
decodes on one side only, ``adaptive`` (mode auto) picks between them, and ``resume`` keeps a
loop going when the cloud is lost.
"""
