"""Side-by-side Markdown table of finished runs: every step's rows, train mIoU (val mIoU).

    python benchmarks/compare_runs.py "old default=runs/a" "new default=runs/b" [--difference]

Each argument is LABEL=RUN_FOLDER (the folder `ial train --run.output_dir` wrote; its table.json is
read). --difference adds a column with the last run minus the first, train and val, per row.
--final prints one row per run instead: the train mIoU of each step's final output (the refined map,
or the unary map without the pairwise network), the last step's val mIoU, and the energy J per step.
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


def final_outputs(rows: dict) -> dict:
    """step -> the row of its final output (pairwise, else unary), steps >= 1."""
    finals = {}
    for (step, stage), row in rows.items():
        if step >= 1 and (stage == "pairwise" or (stage == "unary" and (step, "pairwise") not in rows)):
            finals[step] = row
    return finals


def final_markdown(runs: list[tuple[str, dict]]) -> str:
    steps = sorted({step for _, rows in runs for step in final_outputs(rows)})
    header = ["run", *(f"step {step}" for step in steps), f"val mIoU, step {steps[-1]}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, rows in runs:
        finals = final_outputs(rows)
        cells = [f"{100 * finals[s]['train_miou']:.1f}" if s in finals else "-" for s in steps]
        last = finals.get(steps[-1], {}).get("val_miou")
        lines.append("| " + " | ".join([label, *cells, "-" if last is None else f"{100 * last:.1f}"]) + " |")
        energies = [finals[s].get("energy") if s in finals else None for s in steps]
        if any(e is not None for e in energies):
            cells = ["-" if e is None else f"{e:.4f}" for e in energies]
            lines.append("| " + " | ".join([f"energy J, {label}", *cells, ""]) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER")
    parser.add_argument("--difference", action="store_true")
    parser.add_argument("--final", action="store_true")
    args = parser.parse_args(argv)
    runs = []
    for argument in args.runs:
        label, _, folder = argument.rpartition("=")
        runs.append((label or folder, read_rows(folder)))
    print(final_markdown(runs) if args.final else markdown(runs, args.difference))


if __name__ == "__main__":
    main()
