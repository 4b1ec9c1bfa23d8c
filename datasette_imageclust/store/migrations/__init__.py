"""The migrations of every component: one module per component, each in the order it applies.

Each is registered with ``schema.migration`` when this module is imported; the ``store``
package imports it, so the registry is full before anything under ``store/`` runs
(``schema`` itself does not import it: that would be an import circle). A migration only
ever adds, and one that has shipped is never edited: a change is a new migration at the
end of its component (and a new fixture: tests/make_schema_fixtures.py).
"""
from . import clusters, core, curation, evaluation, map, posts, search, text  # noqa: F401  (importing registers them)
