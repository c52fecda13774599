"""Where a `gpdiff run` spends its time: every stage's wall time and its hottest lines (py-spy).

Runs ``gpdiff run ARGS`` under the sampling profiler py-spy (``pip install py-spy``; it samples the
Python stacks ``--rate`` times a second from outside the process, a few per cent of overhead), then
splits the samples by stage (the pipeline's stage function on the stack; a method's samples go to
``methods/<name>``) and prints, per stage, the seconds sampled and the source lines that were on
top of the stack most often (the Python line that called into the torch op that ran).

    python benchmarks/profile_run.py --out-dir runs/profile -- --out runs/profile/run --quiet
    python benchmarks/profile_run.py --raw runs/profile/pyspy.txt    # summarise an existing record

The run's own stage wall times (``stage.yaml``) are in its report; the profiler's seconds are
samples / rate, which includes the profiler's overhead.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

STAGE = re.compile(r"^(anchor|zoo|prompts|diffusion|generate)_stage \(gpdiff/pipeline\.py")
METHOD = re.compile(r"^(\w+) \(gpdiff/methods/(\w+)\.py")
FRAME = re.compile(r"^(.*) \((.*):(\d+)\)$")


def stage_of(frames: list[str]) -> str:
    """The pipeline stage a stack belongs to (``other`` outside every stage: imports, data, report)."""
    for i, f in enumerate(frames):
        m = STAGE.match(f)
        if m:
            return m.group(1)
        if f.startswith("method_stage (gpdiff/experiment/pipeline.py"):
            for g in frames[i + 1:]:
                mm = METHOD.match(g)
                if mm:
                    return f"methods/{mm.group(2)}"
            return "methods/?"
    return "other"


def hot_line(frames: list[str]) -> str:
    """The innermost frame in gpdiff's own code (the line that launched the work), else the innermost."""
    for f in reversed(frames):
        if "gpdiff/" in f and "site-packages" not in f:
            m = FRAME.match(f)
            return f"{m.group(2)}:{m.group(3)} {m.group(1)}" if m else f
    return frames[-1] if frames else "?"


def summarise(raw: Path, rate: int, top: int) -> str:
    per_stage: Counter[str] = Counter()
    lines: dict[str, Counter[str]] = defaultdict(Counter)
    for row in raw.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r"^.*?site-packages/", "", f) for f in stack.split(";")]
        frames = [re.sub(r"\(/.*?/src/gpdiff/", "(gpdiff/", f) for f in frames]
        stage = stage_of(frames)
        per_stage[stage] += int(count)
        lines[stage][hot_line(frames)] += int(count)
    total = sum(per_stage.values())
    out = [f"{total / rate:.0f} s sampled at {rate} Hz", ""]
    for stage, n in per_stage.most_common():
        out.append(f"{stage}: {n / rate:.1f} s ({n / total:.0%})")
        for line, k in lines[stage].most_common(top):
            out.append(f"    {k / n:5.1%}  {line}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="runs/profile", help="where the raw py-spy record is written")
    ap.add_argument("--rate", type=int, default=20, help="samples per second")
    ap.add_argument("--top", type=int, default=6, help="hottest lines shown per stage")
    ap.add_argument("--raw", type=Path, default=None, help="summarise this existing raw record instead of running")
    ap.add_argument("run_args", nargs="*", help="arguments of `gpdiff run` (after --)")
    args = ap.parse_args()
    raw = args.raw
    if raw is None:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
        raw = Path(args.out_dir) / "pyspy.txt"
        cmd = ["py-spy", "record", "--format", "raw", "--rate", str(args.rate), "--output", str(raw), "--",
               sys.executable, "-m", "gpdiff", "run", *args.run_args]
        subprocess.run(cmd, check=True)
    print(summarise(raw, args.rate, args.top))


if __name__ == "__main__":
    main()
