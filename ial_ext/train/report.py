"""The per-step table of the paper's Table 5 (+ the energy of Table 7): printed, CSV, JSON."""
from __future__ import annotations

import csv
import json
import math
import os

COLUMNS = ("step", "stage", "train_miou", "train_precision", "coverage", "val_miou", "energy")


def table_row(step: int, stage: str, scores: dict | None = None, **extra) -> dict:
    row = {"step": step, "stage": stage}
    if scores is not None:
        row.update(train_miou=scores["miou"], train_precision=scores["precision"], coverage=scores["coverage"])
    row.update(extra)
    return {column: row.get(column) for column in COLUMNS}


def format_table(rows: list[dict]) -> str:
    """Percentages like the paper's tables; '-' where a stage has no such figure."""
    header = "step  stage      train mIoU  precision  coverage  val mIoU    energy"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['step']:>4}  {row['stage']:<9}  {_percent(row['train_miou']):>10}  "
            f"{_percent(row['train_precision']):>9}  {_percent(row['coverage']):>8}  "
            f"{_percent(row['val_miou']):>8}  {_plain(row['energy']):>8}"
        )
    return "\n".join(lines)


def write_table(rows: list[dict], directory: str) -> tuple[str, str]:
    os.makedirs(directory, exist_ok=True)
    csv_path = os.path.join(directory, "table.csv")
    json_path = os.path.join(directory, "table.json")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with open(json_path, "w") as handle:
        json.dump(rows, handle, indent=2)
    return csv_path, json_path


def _percent(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _plain(value) -> str:
    return "-" if value is None else f"{value:.3g}"
