"""The report of an evaluation task (:mod:`.evaluate`): what the coders' answers say about
how interpretable a run's clusters are, and Krippendorff's alpha.

Definitions (the README's "Evaluating clusters" repeats them). Every answer of every coder
counts once; "none fits" is an answer and is never correct.

* precision of cluster c = answers choosing c on sets that truly are c / answers choosing c
  (None when no answer chose c);
* recall of cluster c = answers choosing c on sets of c / answers on sets of c (None when
  no set of c was answered);
* accuracy = correct answers / answers;
* chance = 1 / K, K the number of candidate labels: the accuracy of a coder who picks one
  of the labels at random (one who may also pick "none fits" at random does worse, 1 / (K+1));
* alpha = Krippendorff's alpha for nominal data over the sets as units, each coder's
  answer (a cluster id, or "none fits" as a value of its own) as that coder's value;
  a set answered by one coder only adds nothing. None with fewer than two coders, or when
  no set has two answers, or when every answer is the same value (no variation: alpha is
  0/0).

A pairs task reports, per run compared: the mean rating (1-3) of the pairs that are within
one of its clusters, of those across two clusters, and the difference (within - between);
pairs with an image in the run's unclustered group (or not in the run) are counted apart.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from fractions import Fraction
from typing import Hashable, Iterable, Sequence

from ..store.collection import raw_connection
from ..store.connection import Connection
from .evaluate import candidates, task


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable]]) -> Fraction | None:
    """Krippendorff's alpha for nominal data, exactly (a Fraction).

    ``units``: for each unit, the values the coders gave it (missing values left out).
    From the coincidence matrix o (each unit with m >= 2 values adds 1/(m-1) for every
    ordered pair of values from two different coders), n_c its row sums and n their total:
    alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c * n_k. None when no unit
    has two values, or there is no variation (every value the same)."""
    o: dict[tuple, Fraction] = defaultdict(Fraction)
    for values in units:
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * (nc - 1) if c == k else nc * nk
                if pairs:
                    o[(c, k)] += Fraction(pairs, m - 1)
    n_c: dict[Hashable, Fraction] = defaultdict(Fraction)
    for (c, _), v in o.items():
        n_c[c] += v
    n = sum(n_c.values(), Fraction(0))
    observed = sum((v for (c, k), v in o.items() if c != k), Fraction(0))
    expected = sum((n_c[c] * n_c[k] for c in n_c for k in n_c if c != k), Fraction(0))
    if n == 0 or expected == 0:
        return None
    return 1 - (n - 1) * observed / expected


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def sets_report(db: Connection, t: dict) -> dict:
    conn = raw_connection(db)
    labels = {c["cluster_id"]: c["label"] for c in candidates(db, t["id"])}
    sets_of = Counter(cid for (cid,) in conn.execute("SELECT cluster_id FROM eval_sets WHERE task_id = ?", [t["id"]]))
    answers = conn.execute(
        "SELECT a.coder, a.set_id, s.cluster_id, a.cluster_id FROM eval_answers a JOIN eval_sets s ON s.id = a.set_id "
        "WHERE a.task_id = ? ORDER BY a.set_id, a.coder", [t["id"]]).fetchall()
    chosen, correct, answered = Counter(), Counter(), Counter()
    units: dict[int, list] = defaultdict(list)
    for coder, set_id, truth, pick in answers:
        answered[truth] += 1
        if pick is not None:
            chosen[pick] += 1
        if pick == truth:
            correct[truth] += 1
        units[set_id].append(pick)
    alpha = krippendorff_alpha_nominal(units.values())
    coders = sorted({a[0] for a in answers})
    clusters = [{
        "cluster_id": c, "label": label, "sets": sets_of.get(c, 0), "answers": answered[c],
        "chosen": chosen[c], "correct": correct[c],
        "precision": _ratio(correct[c], chosen[c]), "recall": _ratio(correct[c], answered[c]),
    } for c, label in labels.items()]
    return {
        "task": t["name"], "run": t["run"], "kind": "sets", "sets": t["sets"], "answers": len(answers),
        "answered_sets": len(units), "none_fits": sum(1 for a in answers if a[3] is None),
        "correct": sum(correct.values()), "accuracy": _ratio(sum(correct.values()), len(answers)),
        "candidates": len(labels), "chance": _ratio(1, len(labels)),
        "coders": len(coders), "coder_names": coders,
        "alpha": None if len(coders) < 2 or alpha is None else float(alpha),
        "clusters": clusters,
    }


def pairs_report(db: Connection, t: dict) -> dict:
    conn = raw_connection(db)
    runs: dict[str, dict] = {}
    for run, relation, n_pairs, n_ratings, total in conn.execute("""
            SELECT r.run_name, r.relation, count(DISTINCT p.id), count(g.rating), sum(g.rating)
            FROM eval_pairs p JOIN eval_pair_relations r ON r.pair_id = p.id
            LEFT JOIN eval_ratings g ON g.pair_id = p.id
            WHERE p.task_id = ? GROUP BY r.run_id, r.relation ORDER BY r.run_id""", [t["id"]]):
        row = runs.setdefault(run, {"run": run, **{k: {"pairs": 0, "ratings": 0, "mean": None}
                                                   for k in ("within", "between", "unclustered")}})
        row[relation] = {"pairs": n_pairs, "ratings": n_ratings, "mean": _ratio(total or 0, n_ratings)}
    for row in runs.values():
        w, b = row["within"]["mean"], row["between"]["mean"]
        row["difference"] = None if w is None or b is None else w - b
    coders = sorted(c for (c,) in conn.execute("SELECT DISTINCT coder FROM eval_ratings WHERE task_id = ?", [t["id"]]))
    n = conn.execute("SELECT count(*) FROM eval_ratings WHERE task_id = ?", [t["id"]]).fetchone()[0]
    return {"task": t["name"], "run": t["run"], "kind": "pairs", "pairs": t["pairs"], "ratings": n,
            "coders": len(coders), "coder_names": coders, "runs": list(runs.values())}


def report(db: Connection, name: str) -> dict:
    """The report of task ``name`` (see the module docstring for every number)."""
    t = task(db, name)
    return sets_report(db, t) if t["kind"] == "sets" else pairs_report(db, t)
