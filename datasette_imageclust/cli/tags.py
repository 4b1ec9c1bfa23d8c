"""CLI command for tags (`tag`)."""
from __future__ import annotations

import json
import sys

import click

from .common import Progress, command, database_argument, device_option, echo_status, json_option, open_db


@command()
@database_argument
@click.option("--top", type=int, default=10, show_default=True, help="Tags per image (the best N)")
@click.option("--min-score", type=float,
              help="Keep only tags whose calibrated score is at least this (default: no minimum)")
@click.option("--replace", is_flag=True, help="Tag every image again (default: only images without CLIP tags)")
@device_option()
@json_option()
def tag(database, top, min_score, replace, as_json):
    """Tag each image of DATABASE with the best terms of the zero-shot vocabulary (CLIP:
    needs the model's text tower), stored in the image_tags table (source 'clip')."""
    from ..pipeline import tag as tag_images

    progress = Progress("tagging")
    try:
        s = tag_images(open_db(database), top=top, min_score=min_score, replace=replace, on_status=echo_status,
                       on_progress=progress)
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(s.as_dict()))
    echo_status(f"{s.images} images tagged ({s.tags} tags), {s.already} already had CLIP tags, "
                f"in {s.seconds:.1f}s")
    if s.interrupted:
        echo_status("interrupted: run the same command again to resume")
        sys.exit(130)


COMMANDS = (tag,)
