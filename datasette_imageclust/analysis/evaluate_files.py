"""Coding an evaluation task outside the browser (a survey tool, paper): the export of its
sets or pairs (CSV, the candidate labels, a printable HTML sheet with the thumbnails
inside) and the import of coders' answers from a CSV, checked line by line."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from typing import Any

import sqlite_utils

from ..store import csvsafe
from ..store.collection import raw_connection
from ..store.connection import Connection
from ..store.paths import display
from .evaluate import (
    EvaluationError,
    candidates,
    check_answer,
    check_name,
    check_rating,
    pairs,
    record_answers,
    record_ratings,
    sets,
    task,
)

MAX_IMPORT_BYTES = 64 * 2**20
IMAGE_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png"}


def _paths(db: Connection, image_ids: list[int]) -> dict[int, str]:
    """image id -> the path of its first file (as text), '' for an image gone since."""
    out: dict[int, str] = {}
    for iid, path in raw_connection(db).execute(
            "SELECT image_id, path FROM files WHERE image_id IN (SELECT value FROM json_each(?)) ORDER BY id",
            [json.dumps([int(i) for i in image_ids])]):
        out.setdefault(iid, path)
    return out


def _thumb(db: Connection, image_id: int) -> str:
    row = raw_connection(db).execute("SELECT format, data FROM thumbnails WHERE image_id = ?", [image_id]).fetchone()
    if row is None:
        return '<span class="missing">(no thumbnail)</span>'
    kind = IMAGE_TYPES.get((row[0] or "").lower(), "application/octet-stream")
    return f'<img alt="" src="data:{kind};base64,{base64.b64encode(row[1]).decode("ascii")}">'


def _write_csv(path: str, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csvsafe.writer(f)
        w.writerow(header)
        w.writerows(rows)


SHEET_STYLE = """body{font-family:sans-serif;margin:1em}section{break-inside:avoid;border-top:1px solid #999;
padding:.5em 0}img{max-width:160px;max-height:160px;margin:2px;vertical-align:top}ol.labels{columns:2}"""


def export(db: Connection, name: str, out: str) -> dict:
    """Write task ``name`` for coding outside the browser: ``out`` (sets: set,image_id,path;
    pairs: pair,image_a,path_a,image_b,path_b; nothing that reveals a cluster),
    ``labels.csv`` beside it (cluster,label: the candidates) and ``out`` with ``.html``
    (a printable sheet with the thumbnails embedded). Returns the paths written."""
    t = task(db, name)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise EvaluationError(f"cannot write {display(out)}: the folder {display(folder)} does not exist")
    labels_path = os.path.join(folder, "labels.csv")
    sheet_path = os.path.splitext(out)[0] + ".html"
    if os.path.abspath(labels_path) == os.path.abspath(out):
        raise EvaluationError("-o must not be labels.csv: the labels are written to labels.csv beside it")
    cands = candidates(db, t["id"])
    body = [f"<h1>{html.escape(t['name'])}</h1>"]
    if t["kind"] == "sets":
        rows = sets(db, t["id"], truth=False)
        paths = _paths(db, [i for s in rows for i in s["image_ids"]])
        table = [[s["set_no"], i, paths.get(i, "")] for s in rows for i in s["image_ids"]]
        _write_csv(out, ["set", "image_id", "path"], table)
        body.append("<p>For each set, write down the number of the label that fits all its images, "
                    "or 0 if none fits.</p><h2>Labels</h2><ol class=labels>")
        body += [f"<li value={c['cluster_id']}>{html.escape(c['label'])}</li>" for c in cands]
        body.append("<li value=0>none fits</li></ol>")
        for s in rows:
            body.append(f"<section><h3>Set {s['set_no']}</h3>" + "".join(_thumb(db, i) for i in s["image_ids"])
                        + "<p>Label: ______</p></section>")
    else:
        rows = pairs(db, t["id"])
        paths = _paths(db, [i for p in rows for i in (p["image_a"], p["image_b"])])
        table = [[p["pair_no"], p["image_a"], paths.get(p["image_a"], ""), p["image_b"],
                  paths.get(p["image_b"], "")] for p in rows]
        _write_csv(out, ["pair", "image_a", "path_a", "image_b", "path_b"], table)
        body.append("<p>Rate how similar the two images of each pair are: 1 not similar, 2 somewhat, "
                    "3 very similar.</p>")
        for p in rows:
            body.append(f"<section><h3>Pair {p['pair_no']}</h3>{_thumb(db, p['image_a'])}{_thumb(db, p['image_b'])}"
                        "<p>Rating (1-3): ______</p></section>")
    _write_csv(labels_path, ["cluster", "label"], [[c["cluster_id"], c["label"]] for c in cands])
    with open(sheet_path, "w", encoding="utf-8") as f:
        f.write(f"<!DOCTYPE html><html><head><meta charset=utf-8><title>{html.escape(t['name'])}</title>"
                f"<style>{SHEET_STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    return {"task": t["name"], "kind": t["kind"], "rows": len(table), "csv": out, "labels": labels_path,
            "sheet": sheet_path}


def _number(raw: str, what: str, where: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise EvaluationError(f"{where}: {what} must be a whole number, not {raw[:40]!r}")
    return int(raw)


def _read_rows(path: str, columns: tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
    """(where, {column: text}) for every row of the CSV at ``path``, or EvaluationError."""
    shown = display(path)
    try:
        if os.path.getsize(path) > MAX_IMPORT_BYTES:
            raise EvaluationError(f"{shown} is larger than {MAX_IMPORT_BYTES // 2**20} MB: not an answers file?")
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise EvaluationError(f"cannot read {shown}: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise EvaluationError(f"{shown} line {line}: not UTF-8 text (save the file as UTF-8 CSV)") from e
    if "\x00" in text:
        raise EvaluationError(f"{shown}: contains NUL bytes, not a CSV text file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    out: list[tuple[str, dict[str, str]]] = []
    try:
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != list(columns):
            got = ",".join(header or [])[:80]
            raise EvaluationError(f"{shown} line 1: the header must be {','.join(columns)}, not {got!r}")
        for row in reader:
            where = f"{shown} line {reader.line_num}"
            if not row or all(not c.strip() for c in row):
                continue  # a blank line
            if len(row) != len(columns):
                raise EvaluationError(f"{where}: {len(row)} fields, expected {len(columns)} ({','.join(columns)})")
            out.append((where, dict(zip(columns, (c.strip() for c in row)))))
    except csv.Error as e:
        raise EvaluationError(f"{shown} line {reader.line_num}: not valid CSV ({e})") from e
    if not out:
        raise EvaluationError(f"{shown}: no answers after the header")
    return out


def import_answers(db: sqlite_utils.Database, name: str, path: str) -> dict:
    """Read coders' answers to task ``name`` from the CSV at ``path`` (sets:
    ``coder,set,cluster``, cluster empty for "none fits"; pairs: ``coder,pair,rating``) and
    store them. Every line is checked first: on any error nothing is written and the
    error names the line. A coder's answer replaces the one stored before."""
    t = task(db, name)
    key = "set" if t["kind"] == "sets" else "pair"
    rows = _read_rows(path, ("coder", key, "cluster" if key == "set" else "rating"))
    seen: dict[tuple[str, int], str] = {}
    checked = []
    for where, r in rows:
        try:
            coder = check_name(r["coder"], "coder name")
            no = _number(r[key], key, where)
            if key == "set":
                value = None if r["cluster"] == "" else _number(r["cluster"], "cluster", where)
                check_answer(db, t, no, value)
            else:
                value = _number(r["rating"], "rating", where)
                check_rating(db, t, no, value)
        except EvaluationError as e:
            msg = str(e)
            raise EvaluationError(msg if msg.startswith(where) else f"{where}: {msg}") from None
        if (coder, no) in seen:
            raise EvaluationError(f"{where}: coder {coder!r} answered {key} {no} already ({seen[(coder, no)]})")
        seen[(coder, no)] = where.rsplit(" ", 2)[-2] + " " + where.rsplit(" ", 1)[-1]
        checked.append((coder, no, value))
    n = record_answers(db, t, checked) if key == "set" else record_ratings(db, t, checked)
    return {"task": t["name"], "kind": t["kind"], "answers": n, "coders": len({c for c, _, _ in checked})}
