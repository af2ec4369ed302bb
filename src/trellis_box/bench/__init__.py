"""``trellis-box bench``: the real pipeline timed per stage on bundled photos, for sizing GPUs."""
