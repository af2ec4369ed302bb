"""Model weights: the catalog, where they come from (Hub or a local tree), fetch, lock, verify."""
