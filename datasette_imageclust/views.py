"""Datasette pages: clusters index, cluster gallery, image page, search."""
ROUTES: list = []
