"""The functions with the most samples of their own in a py-spy ``raw`` profile.

    python benchmarks/pyspy_top.py prof.txt [--top 15] [--ours]

``--ours`` lists only kepler_async's frames (self time), to see what we could remove.
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--ours", action="store_true")
    args = parser.parse_args()
    own: Counter[str] = Counter()
    total = 0
    with open(args.raw, encoding="utf-8") as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            samples = int(count)
            total += samples
            frame = stack.split(";")[-1] or "(native or idle)"
            own[frame] += samples
    print(f"{total:,} samples")
    print("| self % | function (file:line) |")
    print("|---|---|")
    shown = 0
    for frame, samples in own.most_common():
        if args.ours and "kepler_async/" not in frame:
            continue
        print(f"| {100 * samples / total:.1f} | `{frame}` |")
        shown += 1
        if shown == args.top:
            break


if __name__ == "__main__":
    main()
