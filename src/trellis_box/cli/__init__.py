"""The ``trellis-box`` command: a thin layer over the library. Only this package prints."""
