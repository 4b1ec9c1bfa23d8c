"""``imageclust load DATABASE --from EXPORT``: its options, progress bar and summary;
``imageclust formats``: the exports recognised without mapping flags."""
from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click

from ..store.paths import display
from .common import CommandError, Progress, command, echo_status, json_option

_OPTIONS = [
    click.option("--from", "export", metavar="EXPORT", type=click.Path(),
                 help="A platform export to load instead of folders (recognised: imageclust formats lists them; "
                      "else map it with --url-column): .csv, .tsv, .ndjson/.jsonl, .json, or 4CAT's image ZIP"),
    click.option("--export-format", metavar="NAME", help="[--from] Read EXPORT as this format (imageclust formats)"),
    click.option("--url-column", metavar="C", help="[--from] The column of image URLs (one, a JSON list, or several "
                                                   "split on --separator); a path such as "
                                                   "data.carousel_media[*].image_versions2.candidates[0].url"),
    click.option("--id-column", metavar="C", help="[--from] The column of post ids (default: the row number)"),
    click.option("--author-column", metavar="C", help="[--url-column] The column of the author"),
    click.option("--date-column", metavar="C", help="[--url-column] The column of the post's date"),
    click.option("--text-column", metavar="C", help="[--url-column] The column of the post's text"),
    click.option("--hashtags-column", metavar="C", help="[--url-column] The column of hashtags"),
    click.option("--permalink-column", metavar="C", help="[--url-column] The column of the post's URL"),
    click.option("--columns", metavar="C1,C2", help="[--from] Original columns to keep in the posts table "
                                                    "(default: all of a recognised CSV, none of JSON)"),
    click.option("--all-columns", is_flag=True, help="[--from] Keep every original column in the posts table"),
    click.option("--separator", metavar="S", help="[--from] Split the URL column on S (e.g. ',')"),
    click.option("--delimiter", metavar="D", help="[--from] The CSV delimiter: , ; | or tab (default: sniffed)"),
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
    from ..ingest.exports import Mapping
    from ..pipeline_posts import load_export

    if export["export"] is None:
        raise CommandError("give PATH... (folders or image files) or --from EXPORT")
    if folders:
        raise CommandError("give PATH... or --from EXPORT, not both")
    if not export["url_column"]:
        for flag in ("id_column", "author_column", "date_column", "text_column", "hashtags_column",
                     "permalink_column", "separator"):
            if export[flag]:
                raise CommandError(f"--{flag.replace('_', '-')} goes with --url-column (a recognised export "
                                   "needs neither)")
    elif export["export_format"]:
        raise CommandError("give --export-format or --url-column, not both")
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
    mapping = Mapping(export["url_column"], export["id_column"], export["separator"], export["author_column"],
                      export["date_column"], export["text_column"], export["hashtags_column"],
                      export["permalink_column"]) if export["url_column"] else None
    bar, progress = DownloadProgress(), Progress()

    def skip(what: str, reason: str) -> None:
        echo_status(f"skipping {display(what)}: {display(reason)}")

    try:
        s = load_export(database, export["export"], mapping=mapping, columns=columns,
                        all_columns=export["all_columns"], export_format=export["export_format"],
                        delimiter=export["delimiter"], cache=export["cache"], concurrency=_or(export["concurrency"], 8),
                        per_host=_or(export["per_host"], 2), limits=limits, retry_failed=export["retry_failed"],
                        on_status=echo_status, on_download=bar.update, on_skip=skip, on_progress=progress,
                        **load_options)
    finally:
        bar.close()
        progress.close()
    if as_json:
        click.echo(json.dumps(s.as_dict()))
    loaded = s.load
    echo_status(f"{s.posts} posts ({s.bad_rows} unreadable rows skipped"
                + (f", {s.merged} rows merged into posts of the same id" if s.merged else "")
                + f"), {s.links} image links, {s.urls} URLs: "
                + (f"{s.unpacked} from the ZIP, " if s.unpacked else "")
                + f"{s.fetched} downloaded, {s.cached} downloaded before, {s.failed} failed"
                + (f", {s.failed_before} failed before (--retry-failed tries them again)" if s.failed_before else "")
                + (f"; {loaded['new']} new images, {loaded['errors']} errors" if loaded else ""))
    if s.interrupted:
        echo_status("interrupted: run the same command again to resume")
        sys.exit(130)
    if s.problem:
        raise CommandError(s.problem)
    if strict and (s.failed or s.bad_rows or (loaded and loaded["errors"])):
        raise CommandError("some URLs, rows or files could not be loaded (--strict)")


@command()
@json_option("Print the formats as JSON on stdout")
def formats(as_json: bool) -> None:
    """List the export formats that load --from recognises without mapping flags, with
    the fields each reads and the source files its mapping was read from."""
    from ..ingest import formats as registry

    found = [{"name": f.name, "title": f.title, "kinds": list(f.kinds), "images": f.images,
              "fields": [{"column": c, "from": src} for c, src in f.fields], "source": f.source, "note": f.note}
             for f in registry.ALL]
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    for f in found:
        click.echo(f"{f['name']}: {f['title']} ({', '.join(f['kinds'])})")
        for field in f["fields"]:
            click.echo(f"    {field['column']:<12} {field['from']}")
        if f["note"]:
            click.echo(f"    note: {f['note']}")
        if f["source"]:
            click.echo(f"    read from: {f['source']}")


COMMANDS = (formats,)
