"""Screenshots of the plugin's pages for the README, from a running demo server.

    bash demo/demo.sh &                       # serves demo/out/demo.db on 127.0.0.1:8001
    python demo/screenshots.py [--url http://127.0.0.1:8001] [--out docs]
"""
from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8001")
    ap.add_argument("--db", default="demo")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    base = f"{a.url}/{a.db}/-/imageclust"
    index = json.load(urllib.request.urlopen(base + ".json"))
    cluster = next(c for c in index["clusters"] if c["kind"] == "cluster" and c["size"] >= 8)
    member = json.load(urllib.request.urlopen(f"{base}/cluster/{cluster['id']}.json"))["members"][0]
    shots = {
        "imageclust-index.png": base,
        "imageclust-cluster.png": f"{base}/cluster/{cluster['id']}",
        "imageclust-image.png": f"{base}/image/{member['image_id']}",
        "imageclust-search.png": f"{base}/search?like={member['image_id']}",
    }
    from playwright.sync_api import sync_playwright

    Path(a.out).mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        for name, url in shots.items():
            page.goto(url)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(Path(a.out) / name))
            print(Path(a.out) / name)
        browser.close()


if __name__ == "__main__":
    main()
