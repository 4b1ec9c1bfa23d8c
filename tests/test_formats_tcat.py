"""DMI-TCAT tweet exports: recognised by their header, each row a Post with the values
read off the fixture (tests/fixtures/exports/tcat/, see its README)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from datasette_imageclust.ingest.formats import Sample, by_name, recognise
from datasette_imageclust.ingest.formats import tcat
from datasette_imageclust.ingest.formats.base import RowError

HERE = Path(__file__).parent / "fixtures" / "exports"
TCAT = HERE / "tcat"
BASE = "http://127.0.0.1:8765"


def read(name: str, delimiter: str, *, base: str = BASE, sig: bool = True) -> tuple[list[str], list[dict]]:
    """The export's header and rows, its {base} replaced (as the pipeline's tests serve it)."""
    raw = (TCAT / name).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "TCAT writes a UTF-8 BOM first"
    text = raw.decode("utf-8-sig" if sig else "utf-8").replace("{base}", base)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader)
    rows = [dict(zip(header, cells)) for cells in reader]
    assert all(len(r) == len(header) for r in rows)
    return header, rows


# Written from reading tcat-fullExport.csv (its README says what each row is for).
EXPECTED = [
    dict(post_id="1763869657003001234", author="alice", created="2024-03-02T10:11:12Z",
         urls=[f"{BASE}/img/a.jpg", f"{BASE}/img/b.jpg?format=jpg&name=large", f"{BASE}/img/c.jpg",
               f"{BASE}/img/d.jpg"],
         hashtags=["cats", "dogs"], text="Four cats, one thread #cats #Dogs https://t.co/AbCdEf1234"),
    dict(post_id="1763881937925100001", author="bob", created="2024-03-02T11:00:00Z",
         urls=[f"{BASE}/img/a.jpg"], hashtags=["cats"], text='RT @alice: "Four cats", one thread #cats'),
    dict(post_id="1764199027307500002", author="carol", created="2024-03-03T08:00:00Z",
         urls=[f"{BASE}/gone404", f"{BASE}/img/e.jpg"], hashtags=["lost", "found"],
         text="Gone and found: https://t.co/Zz https://t.co/Yy #lost #found"),
    dict(post_id="1764584064414700003", author="dave", created="2024-03-04T09:30:00Z",
         urls=[f"{BASE}/img/f.jpg"], hashtags=[], text="A short clip https://t.co/Vv"),
    dict(post_id="1764984201016300004", author="erin", created="2024-03-05T12:00:00Z",
         urls=[], hashtags=[], text="@alice words only, no pictures"),
    dict(post_id="1765448636298200005", author="frank", created="2024-03-06T18:45:30Z",
         urls=[f"{BASE}/img/a-copy.jpg"], hashtags=["cats"], text="Same cat, other file #cats https://t.co/Ww"),
]


def check(rows: list[dict], expected: list[dict]) -> None:
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        post = tcat.post(row)
        assert post.post_id == want["post_id"]
        assert post.platform == "x"
        assert post.author == want["author"]
        assert post.created == want["created"]
        assert post.urls == want["urls"]
        assert post.hashtags == want["hashtags"]
        assert post.text == want["text"]
        assert post.permalink == f"https://twitter.com/{want['author']}/status/{want['post_id']}"
        assert post.files == []


def test_csv_is_recognised_and_every_row_read():
    header, rows = read("tcat-fullExport.csv", ",")
    assert header[:5] == ["id", "time", "created_at", "from_user_name", "text"]
    assert "HTTP status code" in header and header[-2:] == ["mentions", "hashtags"]
    fmt, detail = recognise(Sample(kind="csv", header=header, records=rows[:5]))
    assert (fmt.name, detail) == ("tcat", "media")
    assert by_name("tcat") is fmt
    check(rows, EXPECTED)


def test_tsv_variant_reads_the_same():
    header, rows = read("tcat-randomTweets.tsv", "\t")
    fmt, detail = recognise(Sample(kind="tsv", header=header, records=rows))
    assert (fmt.name, detail) == ("tcat", "media")
    check(rows, EXPECTED[:3])


def test_a_bom_left_on_the_first_name_still_reads():
    header, rows = read("tcat-fullExport.csv", ",", sig=False)
    assert header[0] == "\ufeffid"
    fmt, _ = recognise(Sample(kind="csv", header=header, records=rows))
    assert fmt.name == "tcat"
    assert tcat.post(rows[0]).post_id == "1763869657003001234"


def test_hashtags_split_on_semicolons_never_keep_them():
    # TCAT's "; " join: never 'cats;' or ' dogs'.
    _, rows = read("tcat-fullExport.csv", ",")
    assert rows[0]["hashtags"] == "cats; Dogs"
    row = dict(rows[0], hashtags="cats;dogs ; #Birds;  ")
    assert tcat.post(row).hashtags == ["cats", "dogs", "birds"]


def test_media_of_unknown_type_is_left_out_and_types_stay_in_step():
    _, rows = read("tcat-fullExport.csv", ",")
    row = dict(rows[0], media_type="photo; hologram; animated_gif; photo")
    assert tcat.post(row).urls == [f"{BASE}/img/a.jpg", f"{BASE}/img/c.jpg", f"{BASE}/img/d.jpg"]


def test_the_2015_media_url_column_and_created_at_without_time():
    header, rows = read("tcat-fullExport.csv", ",")
    old = {("media_url" if k == "media_urls" else k): v for k, v in rows[2].items()}
    old["time"] = ""
    post = tcat.post(old)
    assert post.urls == [f"{BASE}/gone404", f"{BASE}/img/e.jpg"]
    assert post.created == "2024-03-03T08:00:00Z"  # from created_at, UTC as TCAT writes it
    names = ["media_url" if h == "media_urls" else h for h in header]
    assert tcat.detect(Sample(kind="csv", header=names, records=[])) == "media"


def test_export_without_media_or_hashtag_columns():
    header, rows = read("tcat-fullExport.csv", ",")
    keep = header[:header.index("from_user_created_at") + 1]  # no export option ticked
    plain = [{k: r[k] for k in keep} for r in rows]
    fmt, detail = recognise(Sample(kind="csv", header=keep, records=plain))
    assert (fmt.name, detail) == ("tcat", "no media columns")
    post = tcat.post(plain[0])
    assert post.urls == []
    assert post.hashtags == ["cats", "dogs"]  # read from the text when the column is absent


def test_a_row_without_id_is_a_row_error():
    _, rows = read("tcat-fullExport.csv", ",")
    with pytest.raises(RowError):
        tcat.post(dict(rows[0], id=""))


def test_a_4cat_csv_is_not_tcat():
    with open(HERE / "4cat-twitter.csv", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    assert tcat.detect(Sample(kind="csv", header=header, records=rows)) is None
    found = recognise(Sample(kind="csv", header=header, records=rows))
    assert found is None or found[0].name != "tcat"


@pytest.mark.parametrize("missing", ["id", "time", "from_user_name", "text"])
def test_a_header_without_a_core_column_is_not_tcat(missing):
    header, _ = read("tcat-fullExport.csv", ",")
    assert tcat.detect(Sample(kind="csv", header=[h for h in header if h != missing], records=[])) is None


def test_created_comes_from_the_epoch_time_first():
    _, rows = read("tcat-fullExport.csv", ",")
    assert tcat.post(dict(rows[0], created_at="")).created == "2024-03-02T10:11:12Z"
    # time is what TCAT computed from created_at; when both are there, time wins
    assert tcat.post(dict(rows[0], created_at="2020-01-01 00:00:00")).created == "2024-03-02T10:11:12Z"
