"""GPU harness only: an import stand-in (see _standin_modules)."""

from _standin_modules import make

make(__name__, globals())
