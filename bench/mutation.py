"""Mutation testing of one critical module against its own tests (mutmut 3, the `mutation` extra).

    python bench/mutation.py analysis/cluster_ward.py            # the tests in MODULES below
    python bench/mutation.py web/http.py --tests tests/test_web_params.py
    python bench/mutation.py analysis/cluster_ward.py --only 'x_ward_merge*'

Each run works in a fresh copy of the package and tests under --workdir (mutmut writes its
mutants/ there, never into the checkout), mutates only MODULE, runs only MODULE's test files
(mutmut runs, per mutant, only the tests that reached the mutated function), two at a time.
It prints killed / total, then each surviving mutant with its diff, and writes the same as
summary.txt (+ summary.json) in the work directory. A developer command, not part of CI:
a module takes minutes to an hour on two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "datasette_imageclust"

# critical module (under datasette_imageclust/) -> the test files that hold its rules
MODULES = {
    "store/paths.py": ["tests/test_filenames.py"],
    "store/publish.py": ["tests/test_web_publish_copy.py", "tests/test_web_publish.py"],
    "store/authors.py": ["tests/test_publish_authors.py"],
    "web/access.py": ["tests/test_web_permissions.py"],
    "web/writes.py": ["tests/test_web_edit.py", "tests/test_web_permissions.py"],
    "web/http.py": ["tests/test_http_parse.py", "tests/test_web_params.py", "tests/test_bad_input.py"],
    "web/upload.py": ["tests/test_web_upload.py"],
    "ingest/download.py": ["tests/test_web_downloads.py", "tests/test_load_export.py"],
    "analysis/curation.py": ["tests/test_curation.py"],
    "analysis/cluster_edits.py": ["tests/test_curation.py"],
    "analysis/evaluate_report.py": ["tests/test_evaluate.py"],
    "analysis/cluster_ward.py": ["tests/test_clustering.py"],
    "analysis/cluster_core.py": ["tests/test_clustering.py"],
    "export/archive.py": ["tests/test_export.py", "tests/test_filenames.py"],
    "analysis/search.py": ["tests/test_search.py", "tests/test_web_search_memory.py"],
}
KILLED = {"killed", "timeout", "segfault"}  # the tests noticed (a hang or crash counts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module", help="path under datasette_imageclust/, e.g. web/http.py")
    ap.add_argument("--tests", nargs="+", help="test files (default: the module's row in MODULES)")
    ap.add_argument("--only", help="mutate only functions matching this glob, e.g. 'x_ward_merge*'")
    ap.add_argument("--workdir", type=Path, help="default: /tmp/imageclust-mutation/<module>")
    ap.add_argument("--pytest-args", default="", help="extra pytest arguments, e.g. '--deselect tests/x.py::test_y'")
    ap.add_argument("--isolation", choices=["fork", "forkserver"], default="forkserver",
                    help="mutmut's process isolation: forkserver (default) also suits the Datasette tests")
    ap.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    a = ap.parse_args()
    module = a.module.removeprefix(PACKAGE + "/")
    tests = a.tests or MODULES.get(module)
    if not tests:
        ap.error(f"{module} has no row in MODULES: give --tests")
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if not mutmut:
        ap.error("mutmut is not installed: pip install -e '.[mutation]'")
    work = a.workdir or Path("/tmp/imageclust-mutation") / module.replace("/", "-").removesuffix(".py")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / PACKAGE, work / PACKAGE, ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", work)  # the pytest settings (asyncio mode)
    (work / "setup.cfg").write_text(
        "[mutmut]\nsource_paths = %s\nonly_mutate = %s/%s\npytest_add_cli_args_test_selection =\n%s\n"
        "pytest_add_cli_args =\n%s\nprocess_isolation = %s\n"
        % (PACKAGE, PACKAGE, module, "\n".join("    " + t for t in tests),
           "\n".join("    " + t for t in ["-p", "no:cacheprovider", *a.pytest_args.split()]), a.isolation))
    env = dict(os.environ)
    # the copy is not beside ../shared: point the tests at it; and one BLAS thread per
    # process, as mutmut forks a child per mutant and a forked OpenBLAS pool can hang
    env.setdefault("IMAGECLUST_SHARED", str(ROOT.parent / "shared"))
    for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = "1"
    dotted = f"{PACKAGE}.{module.removesuffix('.py').replace('/', '.')}"
    names = [f"{dotted}.{a.only}"] if a.only else []
    print(f"mutmut in {work}: {(work / 'setup.cfg').read_text()}", file=sys.stderr)
    run = subprocess.run([mutmut, "run", "--max-children", str(a.jobs), *names], cwd=work, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if "failed to collect stats" in run.stderr or run.returncode:
        print(run.stderr[-3000:], file=sys.stderr)  # e.g. a test that fails before any mutation
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=env,
                         capture_output=True, text=True).stdout
    status = dict(re.findall(r"^\s*(\S+__mutmut_\d+): (.+)$", out, re.M))
    if a.only:
        pat = re.compile(re.escape(dotted + ".") + re.escape(a.only).replace(r"\*", ".*") + "$")
        status = {k: v for k, v in status.items() if pat.match(k)}
    status = {k: v for k, v in status.items() if v != "not checked"} or status
    killed = sorted(k for k, v in status.items() if v in KILLED)
    survived = sorted((k for k, v in status.items() if v not in KILLED), key=_natural)
    lines = [f"{dotted}: {len(killed)} killed / {len(status)} mutants"
             f" ({100 * len(killed) / max(1, len(status)):.0f}%), tests: {' '.join(tests)}"]
    for k in survived:
        diff = subprocess.run([mutmut, "show", k], cwd=work, env=env, capture_output=True, text=True).stdout
        lines += ["", f"SURVIVED ({status[k]}) {k}", *diff.splitlines()[1:]]
    text = "\n".join(lines) + "\n"
    print(text)
    (work / "summary.txt").write_text(text)
    (work / "summary.json").write_text(json.dumps(
        {"module": module, "tests": tests, "killed": len(killed), "total": len(status),
         "status": status}, indent=1))
    print(f"summary: {work / 'summary.txt'}", file=sys.stderr)
    return run.returncode


def _natural(name: str) -> tuple:
    head, _, n = name.rpartition("_")
    return head, int(n) if n.isdigit() else 0


if __name__ == "__main__":
    sys.exit(main())
