"""`finebert distill` on every task shape: each teacher and its student scored on the task's held-out file, in one run.

    python benchmarks/distill_tasks.py [ag_news sms_spam goemotions mrpc] [--layers 3] [--seed 42] [--emulate-avx2]

Teacher: the task's default command (benchmarks/tasks.py: `finebert train` with the task's own flag). Student:
`finebert distill teacher/ TRAIN -o student/ --layers LAYERS --force` on the same training file (no unlabelled text:
the student sees only the teacher's rows), plus the task's training flags that are not carried from the teacher
(`--class-weights auto` for SMS spam). Both are scored by `finebert evaluate --json` on the task's held-out file;
the script prints each side's figure (accuracy; spam F1; macro-F1 for GoEmotions), the points the student lost, the
guard's validation scores and the seconds each command took. Data: ../shared/data. Models go to runs/.
"""

import argparse
import json
import subprocess
import time

from common import CACHE, DATA, cpu_description, emulate_avx2
from tasks import FINEBERT, TASKS, sms_split, run_task

# the points of its figure a student may lose on each task (the distillation guard's default is 1.0)
WITHIN = {"ag_news": 0.5, "sms_spam": 0.5, "goemotions": 1.0, "mrpc": 1.0}
CARRIED_FLAGS = ("--multi-label", "--text-pair-column", "--long-text")  # the student takes these from its teacher


def figure_of(report: dict, figure: str) -> float:
    return report["per_class"][figure[3:]]["f1"] if figure.startswith("f1:") else report[figure]


def student_flags(flags: list[str]) -> list[str]:
    kept, skip = [], False
    for flag in flags:
        if skip:
            skip = False
        elif flag in CARRIED_FLAGS:
            skip = flag != "--multi-label"  # a flag with a value drops its value too
        else:
            kept.append(flag)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=list(WITHIN))
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--emulate-avx2", action="store_true")
    args = parser.parse_args()
    print(cpu_description(emulate_avx2() if args.emulate_avx2 else None), flush=True)
    sms_split()
    for name in args.tasks:
        train_file, eval_file, flags, figure, _ = TASKS[name]
        where = lambda f: CACHE / f if f.startswith("sms_spam") else DATA / f  # noqa: E731
        teacher = run_task(name, args.seed, [])
        teacher_folder = CACHE / f"task-{name}-{args.seed}"
        student_folder = CACHE / f"distill-{name}-{args.seed}"
        command = [FINEBERT, "distill", str(teacher_folder), str(where(train_file)), "-o", str(student_folder),
                   "--layers", str(args.layers), "--seed", str(args.seed), "--force", "--quiet",
                   *student_flags(flags)]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - started
        report = json.loads(subprocess.run([FINEBERT, "evaluate", str(student_folder), str(where(eval_file)), "--json"],
                                           check=True, capture_output=True, text=True).stdout)
        student = figure_of(report, figure)
        record = json.loads((student_folder / "finebert.json").read_text())["metrics"]["distillation"]
        lost = 100 * (teacher["value"] - student)
        verdict = "within" if lost <= WITHIN[name] else "NOT within"
        result = {"task": name, "figure": figure, "teacher": teacher["value"], "student": student,
                  "points_lost": round(lost, 2), "within": WITHIN[name], "layer_map": record["layer_map"],
                  "guard": {"teacher": record["teacher_score"], "student": record["student_score"]},
                  "teacher_seconds": teacher["seconds"], "student_seconds": round(seconds, 1),
                  "command": " ".join(["finebert", "distill", "TEACHER", train_file, "--layers", str(args.layers),
                                       *student_flags(flags)])}
        print(f"{name:11s} {figure}: teacher {teacher['value']:.4f}, student ({args.layers} layers "
              f"{record['layer_map']}) {student:.4f}: {lost:+.2f} points lost, {verdict} {WITHIN[name]}; guard's "
              f"validation {record['teacher_score']:.4f} / {record['student_score']:.4f}; teacher {teacher['seconds']:.0f} s, "
              f"student {seconds:.0f} s", flush=True)
        (CACHE / f"distill-{name}-{args.seed}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
