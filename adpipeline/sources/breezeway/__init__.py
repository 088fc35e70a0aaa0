"""Breezeway: per-region JWT auth, properties and reservations (past stays kept up to date), checks."""
