"""GPU harness only: see ``xformers.ops``."""

STAND_IN = True
