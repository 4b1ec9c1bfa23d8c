"""Reading a database file in a test: the rows of one query, on a connection that is
closed again (``with sqlite3.connect(...)`` only commits; it leaves the file open)."""
from __future__ import annotations

import sqlite3


def rows(path: str, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
