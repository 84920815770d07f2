"""Released weights by name: ``--model zipdepth_base`` downloads, verifies, converts and caches a network's published
checkpoint. :mod:`edgedepth.core.releases` lists them; :mod:`.download` fetches and checks files, :mod:`.store` says
where each lives in the cache and finds what is there, :mod:`.build` converts and exports with the training stack,
:mod:`.resolve` turns a name into the file that runs it."""
