"""CLI commands for clustering and duplicates (`cluster`, `clusters`, `label`, `duplicates`)."""
from __future__ import annotations

import json

import click

from ..store.paths import display
from .common import (CommandError, Progress, command, database_argument, device_option, echo_status, json_option,
                     open_db, run_option)


@command()
@database_argument
@click.option("--on", "on", type=click.Choice(["images", "descriptions", "tags"]), default="images", show_default=True,
              help="What to cluster: the image vectors, the vectors of the images' descriptions (`imageclust "
                   "describe`; embedded with --text-model) or their TF-IDF tag vectors (`imageclust tag`). "
                   "Images without descriptions or tags are left out of such a run")
@click.option("--text-model", metavar="DIR|HUB_ID",
              help="--on descriptions: the text model that embeds them, a CLIP model (its text tower, 77 tokens) or "
                   "a sentence-embedding model such as Xenova/paraphrase-multilingual-MiniLM-L12-v2 (default: the "
                   "database model's text tower)")
@click.option("--describer", metavar="MODEL",
              help="The descriptions by this vision model (for --on descriptions and the terms labels; default: "
                   "each image's newest)")
@click.option("--prompt-id", type=int,
              help="The descriptions answering this prompt (prompts.id; for --on descriptions and the terms labels)")
@click.option("--tag-source", metavar="SOURCE",
              help="The tags for --on tags and the tags labels: clip (`imageclust tag`) or vlm:MODEL (default: "
                   "clip when there are CLIP tags)")
@click.option("--method", type=click.Choice(["ward", "kmeans", "hdbscan"]), default="ward", show_default=True,
              help="ward: constrained Ward (sizes between --min-size and --max-size); kmeans: K-means with "
                   "--clusters K; hdbscan: density-based (UMAP to 5-d, then HDBSCAN), finds K itself and "
                   "leaves outliers unclustered")
@click.option("--clusters", "n_clusters", type=int, help="Number of clusters K (ward, kmeans); no size cap unless --max-size")
@click.option("--min-size", type=int,
              help="Smaller clusters are merged or unclustered (--small); default 3, hdbscan 5")
@click.option("--max-size", type=int, help="Largest cluster (default 10 without --clusters, none with it or with hdbscan)")
@click.option("--small", type=click.Choice(["unclustered", "merge"]), default="unclustered", show_default=True,
              help="Undersized clusters: their images become unclustered, or join the nearest cluster with room")
@click.option("--name", default="default", show_default=True, help="Run name; re-running a name replaces it")
@click.option("--labels", "label_sources",
              help="Label sources, comma-separated: clip, tags, terms, ollama (or 'none'); default terms,clip "
                   "(--on descriptions: terms, from the descriptions; --on tags: tags,terms)")
@click.option("--representatives", type=int, default=3, show_default=True, help="Images nearest the centroid shown per cluster")
@click.option("--knn", "knn_k", type=int, help="Neighbours for k-NN smoothing (0 = off; default 20 without K, 10 with)")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed of the k-means steps and of the split of large collections; "
                   "the same seed and images give the same clusters")
@click.option("--default/--no-default", "make_default", default=None,
              help="Make this the run the plugin shows (default: the first run, or the one it replaces)")
@click.option("--duplicates/--no-duplicates", default=True, show_default=True, help="Also find near-duplicates")
@click.option("--layout/--no-layout", "do_layout", default=True, show_default=True,
              help="Then lay out the map (`imageclust layout` with its defaults) when this run is the default")
@click.option("--ollama-host", default="http://127.0.0.1:11434", show_default=True,
              help="Ollama server for --labels ollama")
@click.option("--ollama-model", default="llava", show_default=True,
              help="Ollama vision model that names each cluster from its representatives")
@click.option("--ollama-timeout", type=float, default=120.0, show_default=True,
              help="Seconds per Ollama request")
@click.option("--ollama-concurrency", type=int, default=2, show_default=True,
              help="Ollama requests in flight at once")
@device_option()
@json_option()
def cluster(database, on, text_model, describer, prompt_id, tag_source, method, n_clusters, min_size, max_size,
            small, name, label_sources, representatives, knn_k, seed, make_default, duplicates, do_layout, ollama_host,
            ollama_model, ollama_timeout, ollama_concurrency, as_json):
    """Cluster the images of DATABASE and store the run (with labels and representatives).

    The paper's recipe (descriptions, UMAP + HDBSCAN, TF-IDF labels):
    `imageclust cluster DATABASE --on descriptions --method hdbscan`."""
    from ..pipeline import cluster_images

    sources = None if label_sources is None else \
        [s.strip() for s in label_sources.split(",") if s.strip() and s.strip() != "none"]
    progress = Progress("embedding descriptions")
    try:
        summary = cluster_images(
            open_db(database), on=on, text_model=text_model, describer=describer, prompt_id=prompt_id,
            tag_source=tag_source, method=method, name=name, n_clusters=n_clusters, min_size=min_size,
            max_size=max_size, small=small, labels=sources, representatives=representatives, knn=knn_k, seed=seed,
            make_default=make_default, duplicates=duplicates, layout=do_layout, on_status=echo_status,
            on_progress=progress, ollama={"host": ollama_host, "model": ollama_model, "timeout": ollama_timeout,
                                          "concurrency": ollama_concurrency})
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(summary.as_dict()))


@command()
@database_argument
@click.option("--name", help="Run name (default: the default run)")
@json_option("One JSON object per cluster per line")
@click.option("--runs", is_flag=True, help="List the runs instead")
@click.option("--set-default", "set_default", is_flag=True, help="Make --name the default run")
@click.option("--delete", is_flag=True, help="Delete the run --name")
def clusters(database, name, as_json, runs, set_default, delete):
    """Show the clusters of a run (paths, labels, representatives)."""
    from ..analysis import clusterstore

    db = open_db(database)
    if (set_default or delete) and not name:
        raise CommandError("--set-default and --delete need --name")
    if set_default:
        clusterstore.set_default(db, name)
        echo_status(f"{name!r} is now the default run")
        return
    if delete:
        clusterstore.delete_run(db, name)
        echo_status(f"deleted run {name!r}")
        return
    if runs:
        from ..store.collection import ImageCollection

        keys = ("name", "source", "method", "n_images", "n_clusters", "is_default", "created", "params")
        for r in sorted(ImageCollection(db).runs(), key=lambda r: r["id"]):
            if as_json:
                click.echo(json.dumps({k: json.loads(r[k]) if k == "params" else
                                       bool(r[k]) if k == "is_default" else r[k] for k in keys}))
            else:
                click.echo(f"{'*' if r['is_default'] else ' '} {r['name']:<20} {r['source']:<12} {r['method']:<8} "
                           f"{r['n_clusters']:>5} clusters {r['n_images']:>7} images  {r['created']}")
        return
    run = clusterstore.find_run(db, name)
    if not as_json:
        click.echo(f"{'id':<7} {'size':>5}  {'label':<40}  representatives")
    for c in clusterstore.cluster_listing(db, run["id"]):
        c.pop("image_ids")
        if as_json:
            click.echo(json.dumps(c, ensure_ascii=False))
        else:
            reps = ", ".join(display(p.rsplit("/", 1)[-1]) for p in c["representatives"])
            click.echo(f"{c['id']:<7} {c['size']:>5}  {display(c['label'][:40]):<40}  {reps}")


@command()
@database_argument
@click.argument("cluster_id", type=int)
@click.argument("text")
@run_option("The clustering run (default: the default run)")
@json_option("Print what the edit did as JSON on stdout")
def label(database, cluster_id, text, run_name, as_json):
    """Set your own label for CLUSTER_ID (an empty TEXT removes it). It wins over the
    computed labels; an edit like `imageclust move` (see `imageclust ops`), re-applied when
    the run is re-computed."""
    from ..analysis import curation
    from .curate import report

    r = curation.label(open_db(database), cluster_id, text, run=run_name)
    report(r, as_json, f"cluster {cluster_id}: " + (f"label set to {text.strip()!r}" if text.strip()
                                                    else "own label removed"))


@command()
@database_argument
@json_option("One group per line: {kind, paths}")
@click.option("--stored", is_flag=True, help="Print the stored near-duplicate groups without recomputing")
def duplicates(database, as_json, stored):
    """Find near-duplicates (stored) and print exact and near-duplicate groups."""
    from ..analysis import neardup
    from ..pipeline import find_duplicates

    db = open_db(database)
    if not stored:
        s = find_duplicates(db, on_status=echo_status)
        echo_status(f"{s.groups} near-duplicate groups ({s.pairs} pairs: {s.by_rule['hash']} by hash, "
                    f"{s.by_rule['aligned']} by aligned pixels)")
    groups = neardup.listing(db)
    for g in groups:
        if as_json:
            click.echo(json.dumps({"kind": g["kind"], "paths": g["paths"]}, ensure_ascii=False))
        else:
            click.echo(f"{g['kind']:<5} {len(g['paths'])}: " + "  ".join(display(p) for p in g["paths"]))
    echo_status(f"{sum(g['kind'] == 'exact' for g in groups)} exact, {sum(g['kind'] == 'near' for g in groups)} near groups")


COMMANDS = (cluster, clusters, label, duplicates)
