"""Peak memory of reading one huge dialog JSONL line (issue 10, item 13).

One JSON line holding a list of short turns (16 MB by default) is read with ``load_pairs`` in a
fresh process per case; the figure is the process's peak RSS growth (``VmHWM``) over what it
had after importing chatrnn, per MB of input, next to a 1 MB line as the baseline in the same run.
Two shapes: every turn distinct (every pair kept: memory is about the pairs) and turns repeating
(most pairs dropped as duplicates: memory should stay near the input's size).

    .venv/bin/python benchmarks/corpus_memory.py [MEGABYTES]

Measured on the 2-core dev box: 16 MB distinct turns 831 MB peak before streaming, 488 MB after;
16 MB repeating turns 568 MB before, 209 MB after (whole-process peak RSS, run from a small parent).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import re, resource, sys, time
    import chatrnn.corpus.dialogs as d
    def hwm():  # VmHWM: this process's peak RSS (ru_maxrss also counts the parent's, forked before exec)
        try:
            return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base = hwm()
    t = time.perf_counter()
    pairs, report = d.load_pairs([sys.argv[1]])
    peak = hwm()
    print(peak // 1024, (peak - base) // 1024, len(pairs), report.read, round(time.perf_counter() - t, 2))
    """
)


def write_line(path: Path, megabytes: float, distinct: bool) -> None:
    turns, size, i = [], 0, 0
    while size < megabytes * (1 << 20):
        t = f"t{i if distinct else i % 997}"
        turns.append(t)
        size += len(t) + 4
        i += 1
    path.write_text(json.dumps(turns) + "\n", "utf-8")


def measure(path: Path) -> tuple[int, int, int, int, float]:
    r = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
    peak, grown, kept, read, secs = r.stdout.split()
    return int(peak), int(grown), int(kept), int(read), float(secs)


def main() -> None:
    size = float(sys.argv[1]) if len(sys.argv) > 1 else 16.0
    with tempfile.TemporaryDirectory(prefix="chatrnn-bench-") as tmp:
        for distinct in (True, False):
            rows = []
            for mb in (1.0, size):
                path = Path(tmp) / f"line-{mb}-{distinct}.jsonl"
                write_line(path, mb, distinct)
                rows.append((mb, *measure(path)))
            base_per_mb = rows[0][2] / rows[0][0]
            label = "distinct turns" if distinct else "repeating turns"
            for mb, peak, grown, kept, read, secs in rows:
                print(
                    f"{label:>15} {mb:5.0f} MB: peak {peak:5d} MB, +{grown:4d} MB ({grown / mb:5.1f} MB per MB, "
                    f"x{grown / mb / base_per_mb if base_per_mb else 0:4.2f} vs 1 MB), "
                    f"{read:,} pairs read, {kept:,} kept, {secs:.1f}s"
                )


if __name__ == "__main__":
    main()
