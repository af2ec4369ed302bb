"""Images in, GLBs out: input checks, the batch engine, its files and reports."""
