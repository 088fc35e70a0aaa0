"""Source slices: one folder per API (client, resources, assets, checks, definitions)."""
