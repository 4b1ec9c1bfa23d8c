"""Validation against the official schemas vendored in tests/schemas/ (see its README), offline.

* GraphML: the GraphML 1.0 XSD. graphml.xsd names its parts by their URLs on
  graphml.graphdrawing.org: a resolver answers those with the local copies (the parser may
  not reach the network at all).
* GEXF: the GEXF 1.2draft grammar, twice. (1) Its RELAX NG grammar (gexf.rng and its parts)
  over the whole file, with the viz part in the viz namespace, as the normative compact
  grammar says (gexf.rnc: ``include "viz.rnc" inherit = viz``); the generated gexf.rng lost
  that (``<include href="viz.rng"/>``), so a copy of it gets ``ns="...1.2draft/viz"`` on that
  include here. (2) Its XSD (gexf.xsd, unchanged) over the file without its ``viz:``
  elements: the generated XSD declares color, position and size in the GEXF namespace (as
  the RNG does), so no file with real ``viz:`` elements, Gephi's own included, can pass it;
  everything else (ids, attributes, types, order) it checks strictly.
"""
from __future__ import annotations

import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from lxml import etree

SCHEMAS = Path(__file__).parent / "schemas"
LOCAL = {
    "http://graphml.graphdrawing.org/xmlns/1.0/graphml-structure.xsd": SCHEMAS / "graphml-1.0" / "graphml-structure.xsd",
    "http://graphml.graphdrawing.org/xmlns/1.0/xlink.xsd": SCHEMAS / "graphml-1.0" / "xlink.xsd",
}
MAIN = {"graphml": SCHEMAS / "graphml-1.0" / "graphml.xsd", "gexf": SCHEMAS / "gexf-1.2draft" / "gexf.xsd"}
GEXF_DIR = SCHEMAS / "gexf-1.2draft"
VIZ = "http://www.gexf.net/1.2draft/viz"


class _Local(etree.Resolver):
    def resolve(self, url, pubid, context):
        if url in LOCAL:
            return self.resolve_filename(str(LOCAL[url]), context)
        if url and url.startswith(("http:", "https:")):
            raise AssertionError(f"the schema asks for {url}, which is not vendored")
        return None


@lru_cache(maxsize=None)
def schema(fmt: str) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_Local())
    return etree.XMLSchema(etree.parse(str(MAIN[fmt]), parser))


@lru_cache(maxsize=None)
def gexf_grammar() -> etree.RelaxNG:
    folder = Path(tempfile.mkdtemp(prefix="gexf-rng-"))
    for f in GEXF_DIR.glob("*.rng"):
        shutil.copy(f, folder / f.name)
    main = (folder / "gexf.rng").read_text(encoding="utf-8")
    assert main.count('<include href="viz.rng"/>') == 1, "the vendored gexf.rng is not the one expected"
    (folder / "gexf.rng").write_text(main.replace('<include href="viz.rng"/>', f'<include href="viz.rng" ns="{VIZ}"/>'),
                                     encoding="utf-8")
    return etree.RelaxNG(etree.parse(str(folder / "gexf.rng"), etree.XMLParser(no_network=True)))


def _log(validator) -> list[str]:
    return [f"{e.line}: {e.message}" for e in validator.error_log]


def errors(path: str | Path, fmt: str) -> list[str]:
    """The schemas' complaints about file ``path`` (``fmt``: graphml or gexf); [] if valid."""
    doc = etree.parse(str(path), etree.XMLParser(no_network=True, huge_tree=True))
    out = []
    if fmt == "gexf":
        rng = gexf_grammar()
        rng.validate(doc)
        out += ["RELAX NG " + e for e in _log(rng)]
        doc = etree.ElementTree(etree.fromstring(etree.tostring(doc)))
        for el in list(doc.getroot().iter(f"{{{VIZ}}}*")):
            el.getparent().remove(el)
    s = schema(fmt)
    s.validate(doc)
    return out + ["XSD " + e for e in _log(s)]
