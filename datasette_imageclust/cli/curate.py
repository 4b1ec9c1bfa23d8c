"""CLI commands that edit a clustering run (`move`, `merge`, `split`, `note`, `review`,
`undo`, `ops`; `label` is in :mod:`.clusters`): thin wrappers of :mod:`..analysis.curation`,
the library the browser's edits go through too. Each edit is recorded (actor ``cli:<user>``)
and re-applied when `imageclust cluster` re-runs the run."""
from __future__ import annotations

import json

import click

from .common import command, database_argument, echo_status, json_option, open_db, run_option

RUN = run_option("The clustering run (default: the default run)")
JSON = json_option("Print what the edit did as JSON on stdout")


def report(result, as_json: bool, line: str) -> None:
    """The edit's status line on stderr; with --json, the result on stdout."""
    echo_status(f"{line} (edit #{result.op_id})" if result.op != "undo" else line)
    if as_json:
        click.echo(json.dumps(result.as_dict()))


def target(value: str) -> int | None:
    """--to: a cluster id or 'unclustered' (None)."""
    if value == "unclustered":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a cluster id nor 'unclustered'", param_hint="--to")


@command()
@database_argument
@click.option("--to", "to", required=True, metavar="CLUSTER|unclustered",
              help="The cluster to move the images to, or 'unclustered'")
@click.argument("image_ids", metavar="IMAGE_ID...", nargs=-1, required=True, type=int)
@RUN
@JSON
def move(database, to, image_ids, run_name, as_json):
    """Move images (images.id) to another cluster of the run, or to the unclustered group."""
    from ..analysis import curation

    dest = target(to)
    r = curation.move(open_db(database), list(image_ids), dest, run=run_name)
    report(r, as_json, f"moved {r.images} image{'' if r.images == 1 else 's'} to "
           + ("the unclustered group" if dest is None else f"cluster {r.clusters[0]}"))


@command()
@database_argument
@click.argument("cluster_ids", metavar="CLUSTER CLUSTER...", nargs=-1, required=True, type=int)
@RUN
@JSON
def merge(database, cluster_ids, run_name, as_json):
    """Merge clusters into the first (which keeps its id, label and note)."""
    from ..analysis import curation

    r = curation.merge(open_db(database), list(cluster_ids), run=run_name)
    report(r, as_json, f"merged cluster{'s' if len(r.clusters) > 2 else ''} "
           f"{', '.join(map(str, r.clusters[1:]))} into cluster {r.clusters[0]} ({r.images} images moved)")


@command()
@database_argument
@click.argument("image_ids", metavar="IMAGE_ID...", nargs=-1, required=True, type=int)
@click.option("--label", "label_text", metavar="TEXT", help="The new cluster's own label")
@RUN
@JSON
def split(database, image_ids, label_text, run_name, as_json):
    """Split images (images.id) off as a new cluster of the run."""
    from ..analysis import curation

    r = curation.split(open_db(database), list(image_ids), label=label_text, run=run_name)
    report(r, as_json, f"split {r.images} image{'' if r.images == 1 else 's'} off as cluster {r.clusters[0]}")


@command()
@database_argument
@click.argument("cluster_id", metavar="CLUSTER", type=int)
@click.argument("text")
@RUN
@JSON
def note(database, cluster_id, text, run_name, as_json):
    """Write a note on a cluster (an empty TEXT clears it)."""
    from ..analysis import curation

    r = curation.note(open_db(database), cluster_id, text, run=run_name)
    report(r, as_json, f"cluster {cluster_id}: " + ("note saved" if text.strip() else "note cleared"))


@command()
@database_argument
@click.argument("cluster_id", metavar="CLUSTER", type=int)
@click.option("--not-reviewed", "--undo", "not_reviewed", is_flag=True, help="Mark it not reviewed (again)")
@RUN
@JSON
def review(database, cluster_id, not_reviewed, run_name, as_json):
    """Mark a cluster as reviewed."""
    from ..analysis import curation

    r = curation.review(open_db(database), cluster_id, not not_reviewed, run=run_name)
    report(r, as_json, f"cluster {cluster_id} marked {'not ' if not_reviewed else ''}reviewed")


@command()
@database_argument
@RUN
@JSON
def undo(database, run_name, as_json):
    """Undo the run's last edit (again for the one before)."""
    from ..analysis import curation

    r = curation.undo(open_db(database), run=run_name)
    report(r, as_json, f"undid edit #{r.op_id} ({r.undid})")


@command()
@database_argument
@RUN
@json_option("One JSON object per edit per line")
def ops(database, run_name, as_json):
    """List the run's edits, oldest first (undone ones too, and why any no longer applies)."""
    from ..analysis import curation

    for o in curation.operations(open_db(database, readonly=True), run=run_name):
        if as_json:
            click.echo(json.dumps(o, ensure_ascii=False))
            continue
        args = json.dumps(o["args"], ensure_ascii=False)  # a note's newline stays on this line
        state = f"undone {o['undone']}" if o["undone"] else o["status"] + (f": {o['message']}" if o["message"] else "")
        click.echo(f"#{o['id']:<5} {o['created']}  {o['actor']:<16} {o['op']:<7} {args}  [{state}]")


COMMANDS = (move, merge, split, note, review, undo, ops)
