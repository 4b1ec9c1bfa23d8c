"""CLI commands for the map (`layout`)."""
