"""Admin for task rows and workers (filled by the admin work)."""
