"""Admin for periodic schedules (filled by the beat work)."""
