"""Ready-made SQL over an imageclust database, offered as Datasette canned (0.65) or
stored (1.0) queries, and shown in the README. Parameters are named (``:id``...) and
cast: Datasette passes them as text, which never equals an integer column in SQLite."""
from __future__ import annotations

from .postcolumns import PostColumns, hashtags_cte, month_sql

QUERIES: dict[str, dict] = {
    "imageclust_similar": {
        "title": "Images most similar to an image (exact)",
        "description": "sqlite-vec's exact cosine KNN over image_vectors: the :k nearest images to image :id.",
        "sql": """select v.image_id, round(1 - v.distance, 4) as similarity, f.path
from image_vectors v join files f on f.id = (select min(id) from files where image_id = v.image_id)
where v.embedding match (select embedding from image_vectors where image_id = cast(:id as integer))
  and v.k = cast(:k as integer) + 1
  and v.image_id != cast(:id as integer)
order by v.distance""",
    },
    "imageclust_similar_fast": {
        "title": "Images most similar to an image (bit index, then exact)",
        "description": "Hamming KNN over the mean-centred sign bits in image_bits (written by "
                       "`imageclust index`), then exact cosine on those candidates: fast at 100k+ images.",
        "sql": """with q as (select embedding from image_vectors where image_id = cast(:id as integer)),
candidates as (
  select image_id from image_bits
  where bits match vec_quantize_binary(vec_sub((select embedding from q), (select mean from search_index)))
    and k = 20 * cast(:k as integer)
)
select c.image_id, round(1 - vec_distance_cosine(s.embedding, (select embedding from q)), 4) as similarity
from candidates c join search_vectors s on s.image_id = c.image_id
where c.image_id != cast(:id as integer)
order by similarity desc limit cast(:k as integer)""",
    },
    "imageclust_cluster_images": {
        "title": "Images of a cluster",
        "description": "Members of cluster :cluster, nearest the centroid first.",
        "sql": """select m.rank, m.image_id, round(m.distance, 4) as distance, f.path
from cluster_members m join files f on f.id = (select min(id) from files where image_id = m.image_id)
where m.cluster_id = cast(:cluster as integer) order by m.rank""",
    },
    "imageclust_clusters": {
        "title": "Clusters of the default run",
        "description": "Every cluster of the default clustering run, largest first.",
        "sql": """select c.id, c.label, c.size, round(c.cohesion, 3) as cohesion
from clusters c join cluster_runs r on r.id = c.run_id
where r.is_default = 1 and c.kind = 'cluster' order by c.size desc""",
    },
    "imageclust_exact_duplicates": {
        "title": "Exact duplicates",
        "description": "Images stored in more than one file (identical bytes).",
        "sql": """select image_id, count(*) as copies, group_concat(path, char(10)) as paths
from files group by image_id having count(*) > 1 order by copies desc""",
    },
    "imageclust_near_duplicates": {
        "title": "Near-duplicate groups",
        "description": "Groups found by `imageclust duplicates` (resized, recompressed, cropped copies...).",
        "sql": """select g.id as group_id, g.size, group_concat(f.path, char(10)) as paths
from duplicate_groups g join duplicate_members d on d.group_id = g.id
join files f on f.id = (select min(id) from files where image_id = d.image_id)
group by g.id order by g.size desc, g.id""",
    },
}

# The tables each query needs: offered only where they exist.
NEEDS = {
    "imageclust_similar": {"image_vectors", "files"},
    "imageclust_similar_fast": {"image_bits", "search_index", "search_vectors", "image_vectors"},
    "imageclust_cluster_images": {"cluster_members", "files"},
    "imageclust_clusters": {"clusters", "cluster_runs"},
    "imageclust_exact_duplicates": {"files"},
    "imageclust_near_duplicates": {"duplicate_groups", "duplicate_members", "files"},
    "imageclust_clusters_by_month": {"clusters", "cluster_runs", "cluster_members", "posts", "post_images"},
    "imageclust_clusters_by_hashtag": {"clusters", "cluster_runs", "cluster_members", "posts", "post_images"},
}
# The default run's clusters joined to the posts their images appear in (as ``p``).
_CLUSTER_POSTS = """from clusters c join cluster_runs r on r.id = c.run_id and r.is_default = 1
join cluster_members m on m.cluster_id = c.id
join post_images pi on pi.image_id = m.image_id
join posts p on p.id = pi.post"""


def post_queries(cols: PostColumns) -> dict[str, dict]:
    """Clusters x month and clusters x hashtag, where ``posts`` has such a column (their
    SQL names the column, so it is made per database)."""
    out = {}
    if cols.date:
        month = month_sql(cols.date)
        out["imageclust_clusters_by_month"] = {
            "title": "Clusters of the default run by month of their posts",
            "description": f"Posts (by {cols.date}) per cluster and month: how many posts the cluster's images appear in.",
            "sql": f"""select c.id as cluster_id, c.label, {month} as month, count(distinct p.id) as posts
{_CLUSTER_POSTS}
where {month} is not null
group by c.id, month order by c.id, month""",
        }
    if cols.hashtags:
        out["imageclust_clusters_by_hashtag"] = {
            "title": "Clusters of the default run by hashtag of their posts",
            "description": f"Posts per cluster and hashtag (from {cols.hashtags}: a JSON list, or text separated "
                           "by commas or spaces; lower case, without '#').",
            "sql": f"""with {hashtags_cte(cols.hashtags)}
select c.id as cluster_id, c.label, t.tag as hashtag, count(distinct p.id) as posts
{_CLUSTER_POSTS}
join post_tags t on t.post = p.id
group by c.id, t.tag order by c.id, posts desc, t.tag""",
        }
    return out


def available(tables: set[str], posts: PostColumns | None = None) -> dict[str, dict]:
    """The queries whose tables exist in a database with these ``tables`` (and ``posts``
    columns: see ``store.postcolumns``)."""
    if "imageclust_meta" not in tables:
        return {}
    queries = {**QUERIES, **post_queries(posts or PostColumns())}
    return {name: q for name, q in queries.items() if NEEDS[name] <= tables}
