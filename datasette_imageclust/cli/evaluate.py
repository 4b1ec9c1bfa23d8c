"""CLI: `imageclust evaluate` (create, list, export, import, report): the interpretability
evaluation of a clustering run, through :mod:`..analysis.evaluate` and its siblings."""
from __future__ import annotations

import json

import click

from ..store.paths import display
from .common import command, database_argument, echo_status, json_option, open_db


@click.group()
def evaluate() -> None:
    """Measure how interpretable a run's clusters are: coders label random image sets
    (the AoIR 2025 paper's protocol); see the README, "Evaluating clusters"."""


@command("create")
@database_argument
@click.option("--run", "run_name", metavar="NAME", help="The clustering run (default: the default run)")
@click.option("--name", required=True, help="The task's name")
@click.option("--sets-per-cluster", type=int, default=3, show_default=True,
              help="Disjoint image sets drawn from each cluster (fewer when a cluster is too small)")
@click.option("--set-size", type=int, default=4, show_default=True,
              help="Images per set (a smaller cluster gives one set of all its images)")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: the same seed, the same task")
@click.option("--pairs", type=int, default=0,
              help="Make a pairs task instead: N image pairs within clusters and N across, per run")
@click.option("--compare-run", "compare_runs", metavar="NAME", multiple=True,
              help="With --pairs: another run to compare on the same pairs (repeatable)")
@json_option()
def create(database, run_name, name, sets_per_cluster, set_size, seed, pairs, compare_runs, as_json):
    """Draw a coding task from a clustering run of DATABASE."""
    from ..analysis.evaluate import create_task

    s = create_task(open_db(database), name, run=run_name, sets_per_cluster=sets_per_cluster, set_size=set_size,
                    seed=seed, pairs=pairs, compare_runs=compare_runs)
    if s.kind == "sets":
        echo_status(f"task {s.name!r}: {s.sets} sets ({s.images} images) from {s.candidates} clusters of run "
                    f"{s.run!r}" + (f"; {len(s.short_clusters)} clusters too small for {sets_per_cluster} full "
                                    f"sets" if s.short_clusters else ""))
    else:
        echo_status(f"task {s.name!r}: {s.pairs} pairs from runs {', '.join(map(repr, s.runs))}")
    if as_json:
        click.echo(json.dumps(s.as_dict()))


@command("list")
@database_argument
@json_option("One JSON object per task per line")
def list_tasks(database, as_json):
    """List the evaluation tasks of DATABASE."""
    from ..analysis.evaluate import tasks

    found = tasks(open_db(database, readonly=True))
    if not found:
        echo_status("no evaluation tasks; make one with `imageclust evaluate create`")
    for t in found:
        if as_json:
            click.echo(json.dumps(t, ensure_ascii=False))
        else:
            size = f"{t['sets']} sets" if t["kind"] == "sets" else f"{t['pairs']} pairs"
            click.echo(f"{display(t['name']):<24} run {display(t['run']):<16} {size:>10}  {t['coders']} coders  "
                       f"{t['answers']} answers  {t['created']}")


@command("export")
@database_argument
@click.argument("task")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The CSV of sets (set,image_id,path) or pairs; labels.csv and a .html sheet go beside it")
def export(database, task, output):
    """Write TASK for coding outside the browser (CSV, labels.csv, printable HTML)."""
    from ..analysis.evaluate_files import export as write

    out = write(open_db(database, readonly=True), task, output)
    echo_status(f"wrote {out['rows']} rows to {display(out['csv'])}, the labels to {display(out['labels'])}, "
                f"the sheet to {display(out['sheet'])}")


@command("import")
@database_argument
@click.argument("task")
@click.argument("answers", type=click.Path(dir_okay=False))
def import_(database, task, answers):
    """Store coders' answers to TASK from a CSV (coder,set,cluster; cluster empty for
    "none fits"; a pairs task: coder,pair,rating). Nothing is stored if any line is wrong."""
    from ..analysis.evaluate_files import import_answers

    r = import_answers(open_db(database), task, answers)
    echo_status(f"task {r['task']!r}: stored {r['answers']} answers of {r['coders']} coders")


@command("report")
@database_argument
@click.argument("task")
@json_option("The report as JSON on stdout")
def report(database, task, as_json):
    """Precision and recall per cluster, accuracy, chance, coders and their agreement."""
    from ..analysis.evaluate_report import report as make

    r = make(open_db(database, readonly=True), task)
    if as_json:
        click.echo(json.dumps(r, ensure_ascii=False))
        return
    for line in text_report(r):
        click.echo(line)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _mean(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def text_report(r: dict) -> list[str]:
    """The report as lines of text."""
    if r["kind"] == "pairs":
        lines = [f"task {display(r['task'])}: {r['pairs']} pairs, {r['ratings']} ratings by {r['coders']} coders"]
        for run in r["runs"]:
            w, b, d = run["within"], run["between"], run["difference"]
            lines.append(f"run {display(run['run'])}: within {_mean(w['mean'])} ({w['pairs']} pairs), between "
                         f"{_mean(b['mean'])} ({b['pairs']} pairs), difference "
                         f"{'-' if d is None else format(d, '+.2f')}, {run['unclustered']['pairs']} pairs unclustered")
        return lines
    alpha = "-" if r["alpha"] is None else f"{r['alpha']:.3f}"
    lines = [f"task {display(r['task'])} (run {display(r['run'])}): {r['answers']} answers on {r['answered_sets']} of "
             f"{r['sets']} sets by {r['coders']} coders",
             f"accuracy {_pct(r['accuracy'])}  chance {_pct(r['chance'])}  none fits {r['none_fits']}  "
             f"Krippendorff's alpha {alpha}",
             f"{'cluster':>8} {'precision':>9} {'recall':>7} {'sets':>5}  label"]
    for c in r["clusters"]:
        lines.append(f"{c['cluster_id']:>8} {_pct(c['precision']):>9} {_pct(c['recall']):>7} {c['sets']:>5}  "
                     f"{display(c['label'])}")
    return lines


for _command in (create, list_tasks, export, import_, report):
    evaluate.add_command(_command)

COMMANDS = (evaluate,)
