"""Small data sets in the real on-disk formats, written for tests, demos and timing.

One module per format: :mod:`.faces` (UTKFace, FairFace, Diversity in Faces folders),
:mod:`.inaturalist` (a miniature release), :mod:`.tweets` (TwitterAAE files) and
:mod:`.reddit` (pushshift comment dumps). Every writer is seeded and puts in, on purpose,
the malformed entries the real releases contain.
"""
