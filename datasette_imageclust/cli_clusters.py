"""CLI commands for clustering and duplicates (`cluster`, `clusters`, `duplicates`)."""
