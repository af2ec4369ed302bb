"""The visual report of a batch: ``report.html`` with thumbnails and an interactive 3D view."""
