"""What a person sees on the command line: one line per run and a summary,
a live bar only on a terminal, the full event log with --verbose."""

import io
import json
import os
import subprocess
import sys

from diffmine_assets.progress import report, terminal_progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_is_drawn_on_a_terminal_only():
    tty, pipe = Terminal(), io.StringIO()
    with terminal_progress(stream=tty):
        for step in range(0, 101, 25):
            report("training", step, 100, f"loss 0.1  ETA {100 - step}s")
    with terminal_progress(stream=pipe):
        report("training", 50, 100, "loss 0.1")
    report("training", 1, 2, "no bar installed: nothing happens")
    drawn = tty.getvalue()
    assert "training" in drawn and "[" + "#" * 6 in drawn and "\r" in drawn and "\n" not in drawn
    assert pipe.getvalue() == ""


def test_demo_prints_a_line_per_run_and_verbose_prints_the_events(project):
    env = dict(os.environ, DAGSTER_HOME=str(project.parent), DIFFMINE_CONFIG=str(project))
    run = lambda *args: subprocess.run([sys.executable, "-m", "diffmine_assets.cli", *args], env=env, capture_output=True, text=True, timeout=600)  # noqa: E731
    demo = run("demo")
    assert demo.returncode == 0, demo.stderr[-2000:]
    lines = (demo.stdout + demo.stderr).splitlines()
    assert len(lines) <= 60, "\n".join(lines)
    assert not [line for line in lines if " - DEBUG - " in line]
    assert sum(line.startswith("ok ") for line in lines) == 6  # dataset, 4 labels, report
    assert json.loads(demo.stdout.splitlines()[-1])["failed_runs"] == 0
    verbose = run("materialize", "--dataset", "builtin", "--verbose")
    assert verbose.returncode == 0
    assert " - DEBUG - " in verbose.stdout + verbose.stderr  # Dagster's events
    assert json.loads(verbose.stdout.splitlines()[-1])["skipped"]["checkpoint"] == 1
