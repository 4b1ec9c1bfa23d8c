"""Datasette page: the zoomable map, and the atlas sheets it draws from."""
ROUTES: list = []
