"""What a model cost to train: teacher and student updates, tokens processed and wall time.

Shared by the toy pipeline and examples/scale: each stage's completion marker records its own cost
(updates, tokens, wall_seconds); a distilled student's cost includes its teachers'.
"""
from typing import Dict, List, Optional


def total_cost(parts: List[dict]) -> dict:
    return {key: round(sum(p.get(key, 0) for p in parts), 1) for key in ("updates", "tokens", "wall_seconds")}


def write_cost(costs: Dict[str, List[dict]], path: str) -> None:
    """Markdown: per configuration, mean over seeds of what it cost (teachers included for distilled students)."""
    lines = ["| model | runs | teacher updates | student updates | tokens (M) | wall (min) |", "|---|---|---|---|---|---|"]
    for name, runs in costs.items():
        def mean(key):
            return sum(r.get(key, 0) for r in runs) / len(runs)
        lines.append(f"| {name} | {len(runs)} | {mean('teacher_updates'):.0f} | {mean('student_updates'):.0f} | "
                     f"{mean('tokens') / 1e6:.2f} | {mean('wall_seconds') / 60:.1f} |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("Compute per model (mean over seeds; distilled students include their teachers).\n\n")
        f.write("\n".join(lines) + "\n")


def model_cost(student: dict, teachers: Optional[dict]) -> dict:
    teachers = teachers or {}
    return {"teacher_updates": teachers.get("updates", 0), "student_updates": student["updates"],
            "tokens": student["tokens"] + teachers.get("tokens", 0),
            "wall_seconds": student["wall_seconds"] + teachers.get("wall_seconds", 0)}
