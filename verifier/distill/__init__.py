"""`tandem-draft`: distil a small draft model from a target, export it to GGUF, evaluate it."""
