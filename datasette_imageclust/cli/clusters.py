"""CLI commands for clustering and duplicates (`cluster`, `clusters`, `label`, `duplicates`)."""
from __future__ import annotations

import json
import time

import click

from . import _err, cli, open_db, wal_note
from ..store.collection import ImageCollection
from ..store.paths import display


@cli.command()
@click.argument("database", type=click.Path())
@click.option("--method", type=click.Choice(["ward", "kmeans", "hdbscan"]), default="ward", show_default=True,
              help="ward: constrained Ward (sizes between --min-size and --max-size); kmeans: K-means with "
                   "--clusters K; hdbscan: density-based, finds K itself and leaves outliers unclustered")
@click.option("--clusters", "n_clusters", type=int, help="Number of clusters K (ward, kmeans); no size cap unless --max-size")
@click.option("--min-size", type=int, default=3, show_default=True, help="Smaller clusters are merged or unclustered (--small)")
@click.option("--max-size", type=int, help="Largest cluster (default 10 without --clusters, none with it)")
@click.option("--small", type=click.Choice(["unclustered", "merge"]), default="unclustered", show_default=True,
              help="Undersized clusters: their images become unclustered, or join the nearest cluster with room")
@click.option("--name", default="default", show_default=True, help="Run name; re-running a name replaces it")
@click.option("--labels", "label_sources", default="terms,clip", show_default=True,
              help="Label sources, comma-separated: clip, terms, ollama (or 'none')")
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
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout")
def cluster(database, method, n_clusters, min_size, max_size, small, name, label_sources, representatives, knn_k,
            seed, make_default, duplicates, do_layout, ollama_host, ollama_model, ollama_timeout, ollama_concurrency, as_json):
    """Cluster the images of DATABASE and store the run (with labels and representatives)."""
    from ..analysis import clustering, clusterstore, labels, neardup

    if min_size < 1:
        raise click.ClickException("--min-size must be at least 1")
    if max_size is not None and max_size < max(min_size, 2):
        raise click.ClickException("--max-size must be at least 2 and at least --min-size")
    if n_clusters is not None and n_clusters < 1:
        raise click.ClickException("--clusters must be at least 1")
    if representatives < 1:
        raise click.ClickException("--representatives must be at least 1")
    if knn_k is not None and knn_k < 0:
        raise click.ClickException("--knn must be 0 or more")
    if ollama_concurrency < 1:
        raise click.ClickException("--ollama-concurrency must be at least 1")
    sources = [s.strip() for s in label_sources.split(",") if s.strip() and s.strip() != "none"]
    bad = [s for s in sources if s not in labels.SOURCES]
    if bad:
        raise click.ClickException(f"unknown label source {bad[0]!r}: choose from {', '.join(labels.SOURCES)}")
    if max_size is None and n_clusters is None:
        max_size = 10
    db = open_db(database)
    coll = ImageCollection(db)
    ids, x = coll.vectors()
    model = coll.model()
    if len(ids) == 0:
        raise click.ClickException(f"{database} has no image vectors: run `imageclust load` first")
    params = {"n_clusters": n_clusters, "min_size": min_size, "max_size": max_size, "small": small,
              "seed": seed}
    if knn_k is not None:
        params["knn_k"] = knn_k
    _err(f"clustering {len(ids)} images with {method}")
    start = time.perf_counter()
    try:
        res = clustering.run(method, x, **params)
    except clustering.ClusteringError as e:
        raise click.ClickException(str(e))
    seconds = time.perf_counter() - start
    stored = dict(params, **{"result": res.info})
    run_id = clusterstore.store_run(db, name, method, stored, ids, x, res.labels, model_id=model["id"] if model else None,
                                    seconds=seconds, representatives=representatives, default=make_default)
    n_real = int(res.labels.max()) + 1 if len(res.labels) and res.labels.max() >= 0 else 0
    n_un = int((res.labels < 0).sum())
    _err(f"{n_real} clusters, {n_un} images unclustered in {seconds:.1f}s (run {name!r})")
    if res.info.get("undersized_clusters"):
        _err(f"{res.info['undersized_clusters']} undersized clusters ({res.info['undersized_images']} images): "
             + (f"{res.info['merged_into_nearest']} images merged into the nearest cluster with room"
                if small == "merge" else "their images are unclustered"))
    if res.info.get("trimmed_outliers"):
        _err(f"{res.info['trimmed_outliers']} images unclustered: none of their 5 nearest neighbours shared their cluster")
    notes = labels.label_run(db, run_id, sources, on_status=_err, ollama={
        "host": ollama_host, "model": ollama_model, "timeout": ollama_timeout, "concurrency": ollama_concurrency})
    dup = neardup.compute(db, on_status=_err) if duplicates else None
    if dup:
        _err(f"{dup['groups']} near-duplicate groups ({dup['pairs']} pairs)")
    is_default = db.execute("SELECT is_default FROM cluster_runs WHERE id = ?", [run_id]).fetchone()[0]
    if as_json:
        click.echo(json.dumps({"run": name, "run_id": run_id, "method": method, "images": int(len(ids)),
                               "clusters": n_real, "unclustered": n_un, "seconds": round(seconds, 3),
                               "labels": notes, "duplicates": dup, "info": res.info}))
    if do_layout and is_default:
        from .map import layout

        from ..store.connection import close

        if not close(db):  # layout opens its own connection, and leaving WAL needs ours closed
            wal_note(database)
        _err("laying out the map (--no-layout skips this)")
        click.get_current_context().invoke(layout, database=database)


@cli.command()
@click.argument("database", type=click.Path())
@click.option("--name", help="Run name (default: the default run)")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per cluster per line")
@click.option("--runs", is_flag=True, help="List the runs instead")
@click.option("--set-default", "set_default", is_flag=True, help="Make --name the default run")
@click.option("--delete", is_flag=True, help="Delete the run --name")
def clusters(database, name, as_json, runs, set_default, delete):
    """Show the clusters of a run (paths, labels, representatives)."""
    from ..analysis.clusterstore import StoreError, cluster_listing, delete_run, find_run
    from ..analysis.clusterstore import set_default as _set_default

    db = open_db(database)
    try:
        if (set_default or delete) and not name:
            raise click.ClickException("--set-default and --delete need --name")
        if set_default:
            _set_default(db, name)
            _err(f"{name!r} is now the default run")
            return
        if delete:
            delete_run(db, name)
            _err(f"deleted run {name!r}")
            return
        if runs:
            if not db["cluster_runs"].exists():
                return
            for r in db.query("SELECT name, method, n_images, n_clusters, is_default, created, params FROM cluster_runs ORDER BY id"):
                if as_json:
                    r["params"] = json.loads(r["params"])
                    r["is_default"] = bool(r["is_default"])
                    click.echo(json.dumps(r))
                else:
                    click.echo(f"{'*' if r['is_default'] else ' '} {r['name']:<20} {r['method']:<8} "
                               f"{r['n_clusters']:>5} clusters {r['n_images']:>7} images  {r['created']}")
            return
        run = find_run(db, name)
    except StoreError as e:
        raise click.ClickException(str(e))
    if not as_json:
        click.echo(f"{'id':<7} {'size':>5}  {'label':<40}  representatives")
    for c in cluster_listing(db, run["id"]):
        c.pop("image_ids")
        if as_json:
            click.echo(json.dumps(c, ensure_ascii=False))
        else:
            reps = ", ".join(display(p.rsplit("/", 1)[-1]) for p in c["representatives"])
            click.echo(f"{c['id']:<7} {c['size']:>5}  {display(c['label'][:40]):<40}  {reps}")


@cli.command()
@click.argument("database", type=click.Path())
@click.argument("cluster_id", type=int)
@click.argument("text")
def label(database, cluster_id, text):
    """Set your own label for CLUSTER_ID (an empty TEXT removes it). It wins over the
    computed labels and is kept when the run is re-computed and the cluster matches."""
    from ..analysis.clusterstore import StoreError, set_user_label

    db = open_db(database)
    try:
        set_user_label(db, cluster_id, text)
    except StoreError as e:
        raise click.ClickException(str(e))
    _err(f"cluster {cluster_id}: " + (f"label set to {text.strip()!r}" if text.strip() else "own label removed"))


@cli.command()
@click.argument("database", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One group per line: {kind, paths}")
@click.option("--stored", is_flag=True, help="Print the stored near-duplicate groups without recomputing")
def duplicates(database, as_json, stored):
    """Find near-duplicates (stored) and print exact and near-duplicate groups."""
    from ..analysis import neardup

    db = open_db(database)
    if not stored:
        s = neardup.compute(db, on_status=_err)
        _err(f"{s['groups']} near-duplicate groups ({s['pairs']} pairs: {s['by_rule']['hash']} by hash, "
             f"{s['by_rule']['aligned']} by aligned pixels)")
    groups = neardup.listing(db)
    for g in groups:
        if as_json:
            click.echo(json.dumps({"kind": g["kind"], "paths": g["paths"]}, ensure_ascii=False))
        else:
            click.echo(f"{g['kind']:<5} {len(g['paths'])}: " + "  ".join(display(p) for p in g["paths"]))
    _err(f"{sum(g['kind'] == 'exact' for g in groups)} exact, {sum(g['kind'] == 'near' for g in groups)} near groups")
