"""``cdk synth`` through the pinned CLI: our app against a bare CDK app, and against workflow size.

Every figure is a ratio or a median of runs made in the same process, one after the other, on the
same machine (STYLE.md: benchmarks are not timed tests). Our synths all share one output folder,
so the pymongo layer is bundled once (by an untimed warm-up) and every timed synth finds it in the
``cdk.out`` asset cache, as a developer's second ``cdk synth`` does.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / ".work"
"""Gitignored: generated specs, the bare app, and the two output folders."""

CATCH_THE_FISH = REPO / "workflows" / "catch_the_fish.yaml"

BARE_APP = """\
import aws_cdk as cdk

app = cdk.App()
cdk.Stack(app, "Empty")
app.synth()
"""

Progress = Callable[[str], None]


def cli_environment() -> dict[str, str]:
    """The Makefile's PATH (the repo's .venv and node_modules first), without telemetry, so neither
    app pays for a network call the other does not."""
    env = dict(os.environ)
    first = [str(REPO / ".venv" / "bin"), str(REPO / "node_modules" / ".bin")]
    env["PATH"] = os.pathsep.join([*first, env["PATH"]])
    env["CDK_DISABLE_CLI_TELEMETRY"] = "true"
    return env


def cdk_executable() -> str:
    return str(REPO / "node_modules" / ".bin" / "cdk")


def tool_versions() -> dict[str, str]:
    env = cli_environment()

    def first_line(command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        return (done.stdout.strip() or done.stderr.strip()).splitlines()[0] if done.returncode == 0 else "?"

    return {
        "cdk_cli": first_line([cdk_executable(), "--version"]),
        "node": first_line(["node", "--version"]),
    }


@dataclass(frozen=True)
class SynthTarget:
    """One app to synthesize: where to run the CLI and what to pass it."""

    name: str
    cwd: Path
    output: Path
    context: Mapping[str, str]
    flags: tuple[str, ...] = ()

    def command(self) -> list[str]:
        context = [arg for key, value in self.context.items() for arg in ("-c", f"{key}={value}")]
        return [
            cdk_executable(),
            "synth",
            "--quiet",
            "--no-notices",
            *self.flags,
            *context,
            "--output",
            str(self.output),
        ]


@dataclass(frozen=True)
class SynthTime:
    wall: float
    """Seconds from starting the CLI to its exit: what a developer waits for."""
    cpu: float
    """User + system seconds of the CLI and all it started (node, Python, the jsii kernel): less
    disturbed than ``wall`` by other work on a shared machine."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def synth_time(target: SynthTarget) -> SynthTime:
    """One ``cdk synth``, CLI start-up included; a failed synth raises."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        target.command(), cwd=target.cwd, env=cli_environment(), capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"cdk synth of {target.name} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    return SynthTime(wall=elapsed, cpu=_children_cpu() - cpu_before)


def write_bare_app(folder: Path) -> None:
    """What ``cdk init app --language python`` leaves, minus the sample: one empty stack, run by
    the same interpreter. Its cdk.json names only the app: CDK's recommended flags include
    ``@aws-cdk/core:validateAgainstDefaultRules``, which rejects a stack without resources."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(BARE_APP, encoding="utf-8")
    config = {"app": f"{REPO / '.venv' / 'bin' / 'python'} app.py"}
    (folder / "cdk.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def generated_spec(name: str, jobs: int) -> dict[str, Any]:
    """A workflow of ``jobs`` stub jobs over several phases; inside a phase: one root, then blocks
    of a fan-out (``width`` jobs after the previous join) and a join after the whole fan-out."""
    phase_count = 2 if jobs <= 20 else 5
    sizes = [jobs // phase_count + (1 if index < jobs % phase_count else 0) for index in range(phase_count)]
    phases: dict[str, Any] = {}
    for index, size in enumerate(sizes):
        width = max(3, size // 10)
        names = [f"p{index}_j{number:03d}" for number in range(size)]
        body: dict[str, Any] = {names[0]: {}}
        previous = [names[0]]
        position = 1
        while position < size:
            fan_out = names[position : position + width]
            body.update({job: {"after": list(previous)} for job in fan_out})
            position += len(fan_out)
            if position < size:
                body[names[position]] = {"after": fan_out}
                previous = [names[position]]
                position += 1
        phases[f"phase_{index}"] = {"jobs": body}
    return {"workflow": name, "description": f"Generated: {jobs} stub jobs.", "phases": phases}


def spec_folder(folder: Path, spec: Mapping[str, Any] | Path) -> Path:
    """A folder holding only this spec, so no other example counts in the synth."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if isinstance(spec, Path):
        shutil.copy(spec, folder / spec.name)
    else:
        text = yaml.safe_dump(dict(spec), sort_keys=False)
        (folder / f"{spec['workflow']}.yaml").write_text(text, encoding="utf-8")
    return folder


def our_target(name: str, specs: Path) -> SynthTarget:
    return SynthTarget(name=name, cwd=REPO, output=WORK / "out-ours", context={"workflowsDir": str(specs)})


def _ratio_summary(
    ours: list[SynthTime], bare: list[SynthTime], bare_unvalidated: list[SynthTime]
) -> dict[str, Any]:
    wall = [o.wall / b.wall for o, b in zip(ours, bare, strict=True)]
    cpu = [o.cpu / b.cpu for o, b in zip(ours, bare, strict=True)]
    like_for_like = [o.wall / b.wall for o, b in zip(ours, bare_unvalidated, strict=True)]
    return {
        "synth_overhead_ratio": round(statistics.median(wall), 3),
        "synth_overhead_ratio_cpu": round(statistics.median(cpu), 3),
        # Our app turns CDK's built-in CloudFormation validation off (cfn-lint does that work in
        # make lint); against a bare app that does the same, the ratio is the app's own cost.
        "synth_overhead_ratio_like_for_like": round(statistics.median(like_for_like), 3),
        "synth_seconds_bare_app_without_validation": round(
            statistics.median(b.wall for b in bare_unvalidated), 2
        ),
        "synth_seconds_catch_the_fish": round(statistics.median(o.wall for o in ours), 2),
        "synth_seconds_bare_app": round(statistics.median(b.wall for b in bare), 2),
        "synth_pairs": [
            {
                "ours": round(o.wall, 2),
                "bare": round(b.wall, 2),
                "ratio": round(r, 3),
                "ours_cpu": round(o.cpu, 2),
                "bare_cpu": round(b.cpu, 2),
            }
            for o, b, r in zip(ours, bare, wall, strict=True)
        ],
    }


def measure_overhead(pairs: int, progress: Progress) -> dict[str, Any]:
    """Interleaved pairs (ours_i, bare_i) after one untimed warm-up of each."""
    bare_dir = WORK / "bare-app"
    write_bare_app(bare_dir)
    ours = our_target("catch_the_fish", spec_folder(WORK / "specs-catch_the_fish", CATCH_THE_FISH))
    bare = SynthTarget(name="bare app", cwd=bare_dir, output=WORK / "out-bare", context={})
    bare_unvalidated = SynthTarget(
        name="bare app without validation",
        cwd=bare_dir,
        output=WORK / "out-bare-unvalidated",
        context={},
        flags=("--no-validation",),
    )
    progress("synth: warm-up of both apps (bundles the pymongo layer into the asset cache if it is cold)")
    warm_up = {"ours": synth_time(ours).wall, "bare": synth_time(bare).wall}
    ours_runs: list[SynthTime] = []
    bare_runs: list[SynthTime] = []
    bare_unvalidated_runs: list[SynthTime] = []
    for index in range(pairs):
        progress(f"synth: pair {index + 1}/{pairs}: catch_the_fish")
        ours_runs.append(synth_time(ours))
        progress(f"synth: pair {index + 1}/{pairs}: bare app (ours took {ours_runs[-1].wall:.1f} s)")
        bare_runs.append(synth_time(bare))
        progress(f"synth: pair {index + 1}/{pairs}: bare app without CDK's built-in validation")
        bare_unvalidated_runs.append(synth_time(bare_unvalidated))
    return {
        **_ratio_summary(ours_runs, bare_runs, bare_unvalidated_runs),
        "synth_warm_up_seconds": {key: round(value, 2) for key, value in warm_up.items()},
    }


def measure_sizes(sizes: list[int], repeats: int, progress: Progress) -> dict[str, Any]:
    """Median of ``repeats`` warm synths per size, sizes interleaved round by round."""
    targets: dict[int, SynthTarget] = {}
    for size in sizes:
        name = f"bench_{size}"
        targets[size] = our_target(name, spec_folder(WORK / f"specs-{size}", generated_spec(name, size)))
    if not any((WORK / "out-ours").glob("asset.*")):
        progress("synth: warm-up (bundles the pymongo layer into the asset cache)")
        synth_time(targets[min(sizes)])
    runs: dict[int, list[float]] = {size: [] for size in sizes}
    for round_number in range(repeats):
        for size in sizes:
            progress(f"synth: {size} jobs, run {round_number + 1}/{repeats}")
            runs[size].append(synth_time(targets[size]).wall)
    medians = {str(size): round(statistics.median(times), 2) for size, times in runs.items()}
    smallest, largest = str(min(sizes)), str(max(sizes))
    return {
        "synth_seconds_by_jobs": medians,
        "synth_runs_by_jobs": {str(size): [round(t, 2) for t in times] for size, times in runs.items()},
        "synth_largest_over_smallest": round(medians[largest] / medians[smallest], 3),
    }


if __name__ == "__main__":  # a quick look at one size: python -m benchmarks.synth 500
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    print(json.dumps(measure_sizes([size], 1, print), indent=2))
