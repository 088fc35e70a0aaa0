"""GA4 slice: Data API client (quota-aware), google-auth credentials, reports declared as data, assets, checks."""
