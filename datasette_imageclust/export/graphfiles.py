"""Streamed network files for Gephi: GEXF 1.2 and GraphML, plus the recipe's plain
``nodes.csv`` (Id,Label,image,...) and ``edges.csv`` (Source,Target,Weight,Type), all
written node by node and edge by edge (nothing holds the whole graph).

GEXF carries positions, sizes and colours as ``viz:`` elements, so the network opens
laid out and coloured; GraphML as the ``x``, ``y``, ``size``, ``r``, ``g``, ``b`` node
data Gephi's GraphML importer reads.

Both validate against their official schemas (GEXF 1.2draft with viz; GraphML 1.0: the
tests hold the XSDs): node ids and GraphML's ``attr.name`` are NMTOKENs (letters, digits,
``.``, ``-``, ``_``: :func:`attribute_name` makes one of a run's name), the readable text is
in labels and attribute values. A GEXF attribute's id is its name, which is what Gephi Lite
(graphology-gexf) shows for a non-numeric id. The CSVs follow :mod:`..store.csvsafe`.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape, quoteattr

from ..store import csvsafe

# Characters XML 1.0 cannot hold even escaped (any character can be in a file name).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
GEXF_TYPES = {"string": "string", "integer": "integer", "float": "double", "boolean": "boolean"}
GRAPHML_TYPES = {"string": "string", "integer": "long", "float": "double", "boolean": "boolean"}
VIZ_KEYS = (("x", "float"), ("y", "float"), ("size", "float"), ("r", "integer"), ("g", "integer"), ("b", "integer"))


def xml_text(value: object) -> str:
    """``value`` as XML-safe text: characters XML cannot hold become ``\\xNN``."""
    text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return _NOT_XML.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def _attr(value: object) -> str:
    return quoteattr(xml_text(value))


_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def attribute_name(text: str, fallback: str = "x") -> str:
    """``text`` as an attribute name every reader takes: accents dropped, any other character
    outside ``A-Za-z0-9._-`` (spaces too) as ``_``; ``fallback`` if nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_NAME.sub("_", ascii_text).strip("_") or fallback


class NetworkWriter:
    """Write one network into folder ``out``: ``network.<fmt>``, ``nodes.csv``, ``edges.csv``.

    ``attributes`` are the node attributes [(name, type)] (types: string, integer, float,
    boolean) declared up front; call :meth:`node` for every node, then :meth:`edge` for
    every edge, then :meth:`close`."""

    def __init__(self, out: Path, fmt: str, attributes: list[tuple[str, str]], *, directed: bool,
                 bom: bool = False, descriptions: dict[str, str] | None = None) -> None:
        reserved = {"image", "label", "weight", *(k for k, _ in VIZ_KEYS)}
        bad = [a for a, _ in attributes if attribute_name(a) != a or a in reserved]
        if bad:
            raise ValueError(f"not an attribute name: {bad[0]!r}")  # a bug: the caller makes names
        self.fmt, self.attributes, self.directed = fmt, attributes, directed
        self.descriptions = descriptions or {}  # attribute -> readable text (GraphML: the key's <desc>)
        self.main: IO[str] = open(out / f"network.{fmt}", "w", encoding="utf-8")
        self.nodes_file = open(out / "nodes.csv", "w", newline="", encoding="utf-8")
        self.edges_file = open(out / "edges.csv", "w", newline="", encoding="utf-8")
        self.nodes_csv = csvsafe.writer(self.nodes_file, bom=bom)
        self.edges_csv = csvsafe.writer(self.edges_file, bom=bom)
        self.nodes_csv.writerow(["Id", "Label", "image", *(a for a, _ in attributes), "size", "x", "y", "color"])
        self.edges_csv.writerow(["Source", "Target", "Weight", "Type"])
        self.n_nodes = self.n_edges = 0
        self.in_edges = False
        self._head()

    def _head(self) -> None:
        kind = "directed" if self.directed else "undirected"
        w = self.main.write
        w('<?xml version="1.0" encoding="UTF-8"?>\n')
        if self.fmt == "gexf":
            w('<gexf xmlns="http://www.gexf.net/1.2draft" xmlns:viz="http://www.gexf.net/1.2draft/viz" '
              'version="1.2">\n  <meta><creator>datasette-imageclust</creator></meta>\n'
              f'  <graph mode="static" defaultedgetype="{kind}">\n    <attributes class="node">\n')
            w('      <attribute id="image" title="image" type="string"/>\n')
            for name, typ in self.attributes:
                w(f'      <attribute id="{name}" title="{name}" type="{GEXF_TYPES[typ]}"/>\n')
            w('    </attributes>\n    <nodes>\n')
            return
        w('<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n'
          '  <key id="label" for="node" attr.name="label" attr.type="string"/>\n'
          '  <key id="image" for="node" attr.name="image" attr.type="string"/>\n')
        for i, (name, typ) in enumerate(self.attributes):
            key = f'  <key id="a{i}" for="node" attr.name="{name}" attr.type="{GRAPHML_TYPES[typ]}"'
            desc = self.descriptions.get(name)
            w(f"{key}><desc>{escape(xml_text(desc))}</desc></key>\n" if desc else f"{key}/>\n")
        for name, typ in VIZ_KEYS:
            w(f'  <key id="{name}" for="node" attr.name="{name}" attr.type="{GRAPHML_TYPES[typ]}"/>\n')
        w('  <key id="weight" for="edge" attr.name="weight" attr.type="double"/>\n'
          f'  <graph id="G" edgedefault="{kind}">\n')

    def node(self, id: str, label: str, attrs: dict, *, image: str | None, size: float,
             xy: tuple[float, float] | None, color: tuple[int, int, int]) -> None:
        w = self.main.write
        values = [(name if self.fmt == "gexf" else f"a{i}", attrs.get(name))
                  for i, (name, _) in enumerate(self.attributes)]
        values = [(k, v) for k, v in values if v is not None]
        if self.fmt == "gexf":
            w(f'      <node id={_attr(id)} label={_attr(label)}>\n        <attvalues>\n')
            if image:
                w(f'          <attvalue for="image" value={_attr(image)}/>\n')
            for k, v in values:
                w(f'          <attvalue for="{k}" value={_attr(v)}/>\n')
            w(f'        </attvalues>\n        <viz:size value="{size:g}"/>\n')
            if xy is not None:
                w(f'        <viz:position x="{xy[0]:g}" y="{xy[1]:g}" z="0"/>\n')
            w(f'        <viz:color r="{color[0]}" g="{color[1]}" b="{color[2]}"/>\n      </node>\n')
        else:
            data = [("label", label), ("image", image), *values, ("size", f"{size:g}"),
                    ("r", color[0]), ("g", color[1]), ("b", color[2])]
            if xy is not None:
                data += [("x", f"{xy[0]:g}"), ("y", f"{xy[1]:g}")]
            w(f'    <node id={_attr(id)}>' + "".join(f'<data key="{k}">{escape(xml_text(v))}</data>'
                                                  for k, v in data if v is not None) + "</node>\n")
        self.nodes_csv.writerow([id, label, image, *(attrs.get(a) for a, _ in self.attributes),
                                 f"{size:g}", "" if xy is None else f"{xy[0]:g}", "" if xy is None else f"{xy[1]:g}",
                                 "#%02x%02x%02x" % color])
        self.n_nodes += 1

    def edge(self, source: str, target: str, weight: float) -> None:
        w = self.main.write
        if not self.in_edges:
            self.in_edges = True
            if self.fmt == "gexf":
                w("    </nodes>\n    <edges>\n")
        if self.fmt == "gexf":
            w(f'      <edge id="{self.n_edges}" source={_attr(source)} target={_attr(target)} weight="{weight:.6g}"/>\n')
        else:
            w(f'    <edge source={_attr(source)} target={_attr(target)}>'
              f'<data key="weight">{weight:.6g}</data></edge>\n')
        self.edges_csv.writerow([source, target, f"{weight:.6g}", "Directed" if self.directed else "Undirected"])
        self.n_edges += 1

    def close(self, *, complete: bool = True) -> None:
        """Finish the files (``complete``), or only close them (the export failed)."""
        try:
            if not complete:
                return
            w = self.main.write
            if self.fmt == "gexf":
                w("    </edges>\n" if self.in_edges else "    </nodes>\n    <edges>\n    </edges>\n")
                w("  </graph>\n</gexf>\n")
            else:
                w("  </graph>\n</graphml>\n")
        finally:
            for f in (self.main, self.nodes_file, self.edges_file):
                f.close()
