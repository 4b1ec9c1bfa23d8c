"""``imageclust load DATABASE --from EXPORT``: its options, progress bar and summary."""
from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click

from ..store.paths import display
from .common import CommandError, Progress, echo_status

_OPTIONS = [
    click.option("--from", "export", metavar="EXPORT", type=click.Path(),
                 help="A platform export to load instead of folders: .csv, .tsv, .ndjson/.jsonl or .json"),
    click.option("--url-column", metavar="C", help="[--from] The column of image URLs (one, a JSON list, "
                                                   "or several split on --separator)"),
    click.option("--id-column", metavar="C", help="[--from] The column of post ids (default: the row number)"),
    click.option("--columns", metavar="C1,C2", help="[--from] The columns to keep in the posts table"),
    click.option("--all-columns", is_flag=True, help="[--from] Keep every column in the posts table"),
    click.option("--separator", metavar="S", help="[--from] Split the URL column on S (e.g. ',')"),
    click.option("--cache", metavar="DIR", type=click.Path(),
                 help="[--from] The download folder (default: <database stem>-cache beside the database)"),
    click.option("--concurrency", type=int, help="[--from] Downloads at a time in all (default 8)"),
    click.option("--per-host", type=int, help="[--from] Downloads at a time per host (default 2)"),
    click.option("--timeout", type=float, help="[--from] Connect and read timeout, seconds (default 30)"),
    click.option("--retries", type=int, help="[--from] Retries on 429, 5xx and dropped connections (default 3)"),
    click.option("--max-size", type=float, metavar="MB", help="[--from] Largest image downloaded, MB (default 50)"),
    click.option("--retry-failed", is_flag=True, help="[--from] Fetch the URLs that failed before again"),
    click.option("--allow-private", is_flag=True,
                 help="[--from] Fetch from private, loopback and link-local addresses (off: see README)"),
]


def export_options(f: Callable) -> Callable:
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


class DownloadProgress(Progress):
    """The download bar: URLs done of those to fetch, with posts, images and failures."""

    def __init__(self) -> None:
        super().__init__("downloading", "URLs")
        self.text = ""

    def update(self, summary: Any, total: int) -> None:
        self.text = (f"{summary.posts} posts, {summary.cached + summary.fetched} images, "
                     f"{summary.failed + summary.failed_before} failures")
        self(summary.fetched + summary.failed, total)

    def _rate(self, done: int | None) -> str | None:
        return self.text or None


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def load_from_export(database: str, folders: tuple, export: dict, *, as_json: bool, strict: bool,
                     **load_options: Any) -> None:
    from ..ingest.download import Limits
    from ..pipeline_posts import load_export

    if export["export"] is None:
        raise CommandError("give PATH... (folders or image files) or --from EXPORT")
    if folders:
        raise CommandError("give PATH... or --from EXPORT, not both")
    if not export["url_column"]:
        raise CommandError("--from needs --url-column (the column of image URLs)")
    for key, low in (("timeout", 0.001), ("max_size", 0.001)):
        if export[key] is not None and export[key] < low:
            raise CommandError(f"--{key.replace('_', '-')} must be more than 0")
    if export["retries"] is not None and not 0 <= export["retries"] <= 20:
        raise CommandError("--retries must be between 0 and 20")
    limits = Limits(**{k: v for k, v in {
        "connect_timeout": export["timeout"], "read_timeout": export["timeout"], "retries": export["retries"],
        "max_bytes": None if export["max_size"] is None else int(export["max_size"] * 1024 * 1024),
    }.items() if v is not None}, allow_private=export["allow_private"])
    columns = [c.strip() for c in export["columns"].split(",")] if export["columns"] else None
    bar, progress = DownloadProgress(), Progress()

    def skip(what: str, reason: str) -> None:
        echo_status(f"skipping {display(what)}: {display(reason)}")

    try:
        s = load_export(database, export["export"], url_column=export["url_column"], id_column=export["id_column"],
                        columns=columns, all_columns=export["all_columns"], separator=export["separator"],
                        cache=export["cache"], concurrency=_or(export["concurrency"], 8),
                        per_host=_or(export["per_host"], 2), limits=limits, retry_failed=export["retry_failed"],
                        on_status=echo_status, on_download=bar.update, on_skip=skip, on_progress=progress,
                        **load_options)
    finally:
        bar.close()
        progress.close()
    if as_json:
        click.echo(json.dumps(s.as_dict()))
    loaded = s.load
    echo_status(f"{s.posts} posts ({s.bad_rows} unreadable rows skipped), {s.links} image links, {s.urls} URLs: "
                f"{s.fetched} downloaded, {s.cached} downloaded before, {s.failed} failed"
                + (f", {s.failed_before} failed before (--retry-failed tries them again)" if s.failed_before else "")
                + (f"; {loaded['new']} new images, {loaded['errors']} errors" if loaded else ""))
    if s.interrupted:
        echo_status("interrupted: run the same command again to resume")
        sys.exit(130)
    if strict and (s.failed or s.bad_rows or (loaded and loaded["errors"])):
        raise CommandError("some URLs, rows or files could not be loaded (--strict)")
