"""The database: connection, schema and its migrations, the collection, SQL recipes."""
from . import migrations  # noqa: F401  (fills schema.MIGRATIONS before any migrate() or check())
