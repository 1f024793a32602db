"""The per-step table of the paper's Table 5 (+ the energy of Table 7): printed, CSV, JSON; and the
per-class scores of a validation (table files, `ial evaluate`)."""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Optional

from torch import Tensor

COLUMNS = ("step", "stage", "train_miou", "train_precision", "coverage", "val_miou", "energy")
CLASS_IOU = "val_class_iou"  # class name -> IoU (None: the class is in neither truth nor prediction)
CSV_CLASS_PREFIX = "val_iou."
CONFUSION_MATRIX_CLASSES = 32  # wider matrices are left to `ial evaluate --json`


def table_row(step: int, stage: str, scores: dict | None = None, **extra) -> dict:
    row = {"step": step, "stage": stage}
    if scores is not None:
        row.update(train_miou=scores["miou"], train_precision=scores["precision"], coverage=scores["coverage"])
    row.update(extra)
    return {column: row.get(column) for column in (*COLUMNS, CLASS_IOU)}


def class_iou(iou: Tensor, class_names: list) -> dict:
    """Per-class IoU (C,) -> {class name: IoU or None}, as the table files hold it."""
    return {name: None if math.isnan(value) else value for name, value in zip(class_names, iou.tolist())}


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


def format_class_iou(class_names: list, columns: dict[str, dict]) -> str:
    """A table of per-class IoU in percent: one row per class, one column per output."""
    width = max(len("class"), *(len(name) for name in class_names))
    lines = [f"{'class':<{width}}" + "".join(f"  {title:>8}" for title in columns)]
    for name in class_names:
        lines.append(f"{name:<{width}}" + "".join(f"  {_percent(scores[name]):>8}" for scores in columns.values()))
    return "\n".join(lines)


def format_confusion(class_names: list, counts: Tensor) -> Optional[str]:
    """Rows: true class; columns: predicted class by index (then 'unk.', the unknown predictions,
    when there are any); entries: percent of the true class's pixels. None above
    CONFUSION_MATRIX_CLASSES classes."""
    classes = len(class_names)
    if classes > CONFUSION_MATRIX_CLASSES:
        return None
    counts = counts.cpu().double()
    if not counts[:, classes:].any():
        counts = counts[:, :classes]
    shares = 100 * counts / counts.sum(1, keepdim=True).clamp_min(1)
    width = max(len(name) for name in class_names) + 4
    header = " " * width + "".join(f"{index:>6}" for index in range(classes))
    lines = [header + ("  unk." if counts.shape[1] > classes else "")]
    for index, (name, row) in enumerate(zip(class_names, shares.tolist())):
        lines.append(f"{index:>2}  {name:<{width - 4}}" + "".join(f"{value:>6.1f}" for value in row))
    return "\n".join(lines)


def write_table(rows: list[dict], directory: str) -> tuple[str, str]:
    """table.json (per-class IoU as a dict per row) and table.csv (the same, one val_iou.<class>
    column per class after the columns of the printed table)."""
    os.makedirs(directory, exist_ok=True)
    csv_path = os.path.join(directory, "table.csv")
    json_path = os.path.join(directory, "table.json")
    class_names = list(dict.fromkeys(name for row in rows for name in (row.get(CLASS_IOU) or {})))
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*COLUMNS, *(CSV_CLASS_PREFIX + name for name in class_names)])
        writer.writeheader()
        for row in rows:
            scores = row.get(CLASS_IOU) or {}
            writer.writerow({**{column: row.get(column) for column in COLUMNS},
                             **{CSV_CLASS_PREFIX + name: value for name, value in scores.items()}})
    with open(json_path, "w") as handle:
        json.dump(rows, handle, indent=2)
    return csv_path, json_path


def _percent(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _plain(value) -> str:
    return "-" if value is None else f"{value:.3g}"
