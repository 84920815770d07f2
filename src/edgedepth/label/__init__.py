"""``edgedepth label``: a teacher's inverse depth for a collection of images, written as resumable label shards.

``recipe`` (the seed's crop-and-resize recipe, pure), ``workers`` (decoding in a loader's processes) and ``job``
(shards, resume, ``torchrun``).
"""
