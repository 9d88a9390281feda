"""`tandem-load`: many edges against one verifier, and the capacity they get.

Edges replay recorded draft traces (``trace``): the real draft model's greedy proposals and
confidences at every position of the target's greedy answer, with the draft's measured time
per token. A replayed edge (``replay``) sends the same rounds a real edge would, through the
real verify API, to a real verifier, and sleeps the draft time instead of computing, so tens of
edges fit on one small machine beside the verifier.
"""
