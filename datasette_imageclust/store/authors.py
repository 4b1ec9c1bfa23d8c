"""``publish-copy --authors``: the names of the people who posted, in a copy of a database.

Authors are personal data. ``pseudonymise`` (the default) replaces each name by a salted
hash, ``author-`` and 16 hex digits: BLAKE2b of the lower-cased name with a random salt
made for this copy and never stored (as 4CAT's "pseudonymise" does), so one person has
one pseudonym throughout the copy (``Alice`` and ``alice`` alike) and no other copy, nor
anyone holding the copy, can link it back. ``drop`` removes them; ``keep`` keeps them.

What is an author name (one home for the rule):

* the values of ``posts.author`` and of every kept export column of ``posts`` whose name
  (lower case) matches :data:`AUTHOR_COLUMNS` (4CAT's ``author*``, ``user*``; TCAT's
  ``from_user_*``; Instagram's ``owner*``; any ``*username*``, ``*screen_name*``): the
  whole value is replaced (pseudonymise) or set to NULL (drop);
* the handles of columns named ``*mention*`` and of every ``@handle`` in any text;
* wherever else such a name appears (case-insensitive) in a text value of any ordinary
  table (post texts, hashtags, descriptions, cluster labels and notes, tags, EXIF, file
  paths of sidecar loads, export file names, URLs such as ``https://x.com/alice/status/1``)
  it is replaced by the pseudonym, or removed: a name of :data:`MIN_CHECKED` characters or
  more wherever it occurs, a shorter one where no letter is next to it (``alice_2024.jpg``,
  ``@alice``, ``/alice/`` but not ``malice``: so a short name that is a word of JSON keys
  or descriptions leaves them whole); except in the columns that hold the package's own
  vocabulary (:data:`VOCABULARY`).

The copy's bytes are then checked (case-insensitive) for every name of
:data:`MIN_CHECKED` characters or more (publish-copy refuses if one is left); shorter byte
strings occur by chance in thumbnails and vectors, so for them the rewrite is the guarantee.

``posts.permalink`` values holding a name are set to NULL with ``pseudonymise`` and
``drop`` (a link with a pseudonym in it would lead nowhere). Numbers in author columns
(user ids) are replaced too, but not looked for in texts.
"""
from __future__ import annotations

import fnmatch
import hashlib
import re
import secrets
from dataclasses import dataclass, field

import sqlite_utils

AUTHORS = ("pseudonymise", "drop", "keep")
AUTHOR_COLUMNS = ("author*", "user*", "*username*", "*user_name*", "*screen_name*", "from_user*", "owner*",
                  "*.owner*", "*.author*", "*.user*")
MENTION_COLUMNS = ("*mention*",)
#: Columns of the package's own words (sources, kinds, methods, keys): never rewritten.
VOCABULARY = frozenset({"source", "kind", "status", "method", "format", "mode", "component", "key", "op",
                        "model", "prompt_id", "content_type", "platform", "relation"})
PREFIX = "author-"
MIN_CHECKED = 8  # names this long are replaced inside words too, and looked for in the copy's bytes
_MENTION = re.compile(r"(?<![\w@])@(?!author-[0-9a-f]{16})(\w[\w.]*\w|\w)")  # (a pseudonym is no handle)
_HANDLE = re.compile(r"[\w.]*[^\W\d_][\w.]*")


@dataclass
class AuthorsNote:
    mode: str
    posts: bool = False  # the database has posts (else there is nothing to say)
    columns: list[str] = field(default_factory=list)
    names: int = 0
    values: int = 0
    permalinks: int = 0
    checked: list[str] = field(default_factory=list)  # what the byte check looks for (not recorded)

    def as_meta(self) -> dict | None:
        if not self.posts:
            return None
        return {"mode": self.mode, "columns": self.columns, "names": self.names, "values": self.values,
                "permalinks_removed": self.permalinks}


def author_columns(db: sqlite_utils.Database, extra: tuple[str, ...] = ()) -> list[str]:
    """The columns of ``posts`` that hold author names (see the module's docstring), and
    those of ``extra`` (names compared without case)."""
    if "posts" not in db.table_names():
        return []
    wanted = {e.lower() for e in extra}
    return [c for c in (r[1] for r in db.execute("PRAGMA table_info(posts)"))
            if c.lower() in wanted or any(fnmatch.fnmatchcase(c.lower(), p) for p in AUTHOR_COLUMNS)]


def _mention_columns(db: sqlite_utils.Database) -> list[str]:
    return [c for c in (r[1] for r in db.execute("PRAGMA table_info(posts)"))
            if any(fnmatch.fnmatchcase(c.lower(), p) for p in MENTION_COLUMNS)]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Namer:
    def __init__(self, mode: str):
        self.mode = mode
        self.salt = secrets.token_bytes(16)  # this copy's, never stored

    def __call__(self, name: str) -> str | None:
        if self.mode == "drop":
            return None
        h = hashlib.blake2b(name.strip().lstrip("@").lower().encode("utf-8"), digest_size=8, salt=self.salt)
        return PREFIX + h.hexdigest()


def redact_authors(db: sqlite_utils.Database, mode: str, extra: tuple[str, ...] = ()) -> AuthorsNote:
    """Pseudonymise, drop or keep the author names of the copy ``db`` (in its transaction);
    ``extra``: more ``posts`` columns that hold them."""
    note = AuthorsNote(mode, posts="posts" in db.table_names())
    if extra and not note.posts:
        raise ValueError("the database has no posts, so no author columns (--author-column)")
    if mode == "keep" or not note.posts:
        return note
    namer = _Namer(mode)
    cols = author_columns(db, extra)
    missing = {e.lower() for e in extra} - {c.lower() for c in cols}
    if missing:
        raise ValueError(f"posts has no column {sorted(missing)[0]!r} (--author-column)")
    note.columns = cols
    names: set[str] = set()
    for c in cols:
        for (v,) in db.execute(f"SELECT DISTINCT {_q(c)} FROM posts WHERE {_q(c)} IS NOT NULL AND {_q(c)} != ''"):
            if isinstance(v, str) and _HANDLE.search(v):
                names.add(v.strip().lstrip("@").lower())
    for c in _mention_columns(db):
        for (v,) in db.execute(f"SELECT DISTINCT {_q(c)} FROM posts WHERE typeof({_q(c)}) = 'text'"):
            names.update(h.lower().strip(".") for h in _HANDLE.findall(v) if len(h.strip(".")) >= 2)
    names = {n for n in names if n}  # (an @handle in a text is rewritten as a handle, not looked for as a word)
    note.names = len(names)
    # An account named like a platform (``instagram``) is rewritten in author columns and
    # as an @handle, not in every URL of that platform; one whose name is in the schema's
    # text (``hashtags``) is not looked for in the bytes.
    platforms = {p.lower() for (p,) in db.execute("SELECT DISTINCT platform FROM posts WHERE typeof(platform) = 'text'")} \
        if "platform" in {r[1] for r in db.execute("PRAGMA table_info(posts)")} else set()
    names -= platforms
    own = _own_words(db)
    note.checked = sorted(n for n in names if len(n) >= MIN_CHECKED and n not in own)
    # Permalinks naming an author lead to them: removed (before the sweep rewrites them).
    if "permalink" in {r[1] for r in db.execute("PRAGMA table_info(posts)")} and names:
        links = [(i, v) for i, v in db.execute("SELECT id, permalink FROM posts WHERE typeof(permalink) = 'text'")
                 if _finder(names)(v)]
        db.conn.executemany("UPDATE posts SET permalink = NULL WHERE id = ?", [(i,) for i, _ in links])
        note.permalinks = len(links)
    # Author columns: the whole value.
    db.execute("CREATE TEMP TABLE IF NOT EXISTS author_rewrites (old PRIMARY KEY, new TEXT)")
    for c in cols:
        note.values += _apply(db, "posts", c, [(v, namer(str(v))) for (v,) in db.execute(
            f"SELECT DISTINCT {_q(c)} FROM posts WHERE {_q(c)} IS NOT NULL AND {_q(c)} != ''")])
    # Every other text: the names, and every @handle.
    pats = _patterns(names)
    for t, c in _text_columns(db):
        if not (t == "posts" and c in cols):
            note.values += _apply(db, t, c, [(v, new) for (v,) in db.execute(
                f"SELECT DISTINCT {_q(c)} FROM {_q(t)} WHERE typeof({_q(c)}) = 'text'")
                if (new := _rewrite(v, pats, namer)) != v])
    db.execute("DROP TABLE temp.author_rewrites")
    return note


def _own_words(db: sqlite_utils.Database) -> str:
    """The package's own text in the copy, lower case: its schema (table and column names)."""
    return "\n".join(sql or "" for (sql,) in db.execute("SELECT sql FROM sqlite_master")).lower()


def _text_columns(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    """(table, column) of every column of an ordinary table that may hold text."""
    virtual = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND sql LIKE 'CREATE VIRTUAL TABLE%'")}
    out = []
    for t in db.table_names():
        if (t in virtual or any(t.startswith(v + "_") for v in virtual) or t.startswith("sqlite_")
                or t == "schema_versions"):
            continue
        for r in db.execute(f"PRAGMA table_info({_q(t)})"):
            declared = (r[2] or "").upper()
            if declared and not any(k in declared for k in ("CHAR", "CLOB", "TEXT")):
                continue
            if r[1].lower() not in VOCABULARY:
                out.append((t, r[1]))
    return out


def _trie(words: list[str]) -> str:
    """One regular expression matching any of ``words`` (longest first), as a trie of their
    characters: Python's re then tries each character once, not each of many names."""
    root: dict = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = True

    def walk(node: dict) -> str:
        ends = "" in node
        alts = [re.escape(ch) + walk(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if ends else body

    return walk(root)


def _patterns(names: set[str]) -> list[re.Pattern]:
    """Expressions that find the names: a long one anywhere, a short one with no letter
    next to it."""
    out = []
    for long_ in (True, False):
        group = sorted(n.lower() for n in names if (len(n) >= MIN_CHECKED) == long_)
        if group:
            alt = _trie(group)
            out.append(re.compile(f"@?(?:{alt})" if long_ else rf"(?<![^\W\d_])@?(?:{alt})(?![^\W\d_])",
                                  re.IGNORECASE))
    return out


def _finder(names: set[str]):
    pats = _patterns(names)
    return lambda text: any(p.search(text) for p in pats)


def _rewrite(text: str, pats: list[re.Pattern], namer: _Namer) -> str:
    def sub(m: re.Match) -> str:
        new = namer(m.group(0))
        return "" if new is None else ("@" + new if m.group(0).startswith("@") else new)

    for p in pats:
        text = p.sub(sub, text)
    # Any other @handle (a person mentioned): as a handle.
    return _MENTION.sub(lambda m: "" if namer(m.group(1)) is None else "@" + namer(m.group(1)), text)


def _apply(db: sqlite_utils.Database, table: str, column: str, pairs: list[tuple]) -> int:
    """Set ``column`` to each pair's new value where it holds the old one (keyed by value:
    works on any table, with or without rowid)."""
    if not pairs:
        return 0
    db.execute("DELETE FROM temp.author_rewrites")
    db.conn.executemany("INSERT INTO temp.author_rewrites (old, new) VALUES (?, ?)", pairs)
    t, c = _q(table), _q(column)
    return db.execute(f"UPDATE {t} SET {c} = (SELECT new FROM temp.author_rewrites WHERE old = {t}.{c}) "
                      f"WHERE {c} IN (SELECT old FROM temp.author_rewrites)").rowcount
