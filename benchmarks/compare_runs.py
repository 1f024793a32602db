"""Side-by-side Markdown table of finished runs: every step's rows, train mIoU (val mIoU).

    python benchmarks/compare_runs.py "old default=runs/a" "new default=runs/b" [--difference]

Each argument is LABEL=RUN_FOLDER (the folder `ial train --run.output_dir` wrote; its table.json is
read). --difference adds a column with the last run minus the first, train and val, per row.
"""
from __future__ import annotations

import argparse
import json
import os

STAGE_ORDER = {"seeds": 0, "unary": 1, "mined": 2, "pairwise": 3}


def read_rows(folder: str) -> dict:
    with open(os.path.join(folder, "table.json")) as handle:
        return {(row["step"], row["stage"]): row for row in json.load(handle)}


def cell(row) -> str:
    if row is None:
        return "-"
    text = f"{100 * row['train_miou']:.1f}"
    return text + (f" ({100 * row['val_miou']:.1f})" if row.get("val_miou") is not None else "")


def difference(first, last) -> str:
    if first is None or last is None:
        return "-"
    text = f"{100 * (last['train_miou'] - first['train_miou']):+.1f}"
    if first.get("val_miou") is not None and last.get("val_miou") is not None:
        text += f" ({100 * (last['val_miou'] - first['val_miou']):+.1f})"
    return text


def markdown(runs: list[tuple[str, dict]], with_difference: bool) -> str:
    keys = sorted({key for _, rows in runs for key in rows}, key=lambda k: (k[0], STAGE_ORDER.get(k[1], 9), k[1]))
    header = ["step", "stage", *(label for label, _ in runs)] + (["difference"] if with_difference else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        cells = [str(key[0]), key[1], *(cell(rows.get(key)) for _, rows in runs)]
        if with_difference:
            cells.append(difference(runs[0][1].get(key), runs[-1][1].get(key)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER")
    parser.add_argument("--difference", action="store_true")
    args = parser.parse_args(argv)
    runs = []
    for argument in args.runs:
        label, _, folder = argument.rpartition("=")
        runs.append((label or folder, read_rows(folder)))
    print(markdown(runs, args.difference))


if __name__ == "__main__":
    main()
