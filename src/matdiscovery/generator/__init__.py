"""PGCGM-style conditional crystal generator (notebook 01)."""
