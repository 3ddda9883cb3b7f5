"""What a person sees on the command line: one line per run and a summary,
a live bar only on a terminal, the full event log with --verbose."""

import io
import json
import os
import subprocess
import sys

from diffmine_assets.cli import main as cli_main
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


def test_demo_prints_a_line_per_run_and_verbose_prints_the_events(project, capsys):
    env = dict(os.environ, DAGSTER_HOME=str(project.parent), DIFFMINE_CONFIG=str(project))
    run = lambda *args: subprocess.run([sys.executable, "-m", "diffmine_assets.cli", *args], env=env, capture_output=True, text=True, timeout=600)  # noqa: E731
    demo = run("demo")
    assert demo.returncode == 0, demo.stderr[-2000:]
    lines = (demo.stdout + demo.stderr).splitlines()
    assert len(lines) <= 60, "\n".join(lines)
    assert not [line for line in lines if " - DEBUG - " in line]
    assert sum(line.startswith("ok ") for line in lines) == 6  # dataset, 4 labels, report
    assert json.loads(demo.stdout.splitlines()[-1])["failed_runs"] == 0
    verbose = run("materialize", "--dataset", "builtin", "--select", "images", "--verbose")
    assert verbose.returncode == 0
    assert " - DEBUG - " in verbose.stdout + verbose.stderr  # Dagster's events
    assert json.loads(verbose.stdout.splitlines()[-1])["ran"] == {"builtin": ["images"]}
    # a person's mistakes: one line each, never a traceback (that is what --verbose is for)
    capsys.readouterr()
    for args, said in ((("materialize", "--dataset", "builtin", "--select", "nosuch"), "unknown assets ['nosuch']"),
                       (("materialize", "--dataset", "builtin", "--label", "purple", "--select", "clusters"), "has no labels ['purple']"),
                       (("materialize", "--dataset", "nosuch"), "no dataset named 'nosuch'"),
                       (("materialize", "--dataset", "builtin", "--budget", "0s"), "a budget is more than 0 s"),
                       (("materialize", "--dataset", "builtin", "--budget", "-5s"), "a budget is more than 0 s"),
                       (("materialize", "--dataset", "builtin", "--budget", "soon"), "is not a duration")):
        rc = cli_main(list(args))
        err = capsys.readouterr().err
        assert rc == 2 and said in err and "Traceback" not in err, (args, err[-2000:])
        assert len(err.strip().splitlines()) == 1, err


def test_a_default_run_says_what_it_did_not_use_and_an_empty_stage_fails(tmp_path):
    """Everything ingestion leaves out is counted, by reason, in the default
    output; a window larger than every image fails its stage, saying why,
    instead of writing an empty table."""
    from diffmine_assets_tests.conftest import FAST, write_config, write_image

    data = tmp_path / "tiny"
    for li, label in enumerate(("red", "blue")):
        for i in range(3):
            write_image(data / label / f"{i}.png", size=(16, 16), seed=10 * li + i)
    (data / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # corrupt
    write_image(data / "red" / ".hidden.png", size=(16, 16), seed=90)
    write_image(data / "blue" / ".thumbs" / "a.png", size=(16, 16), seed=91)  # a hidden folder
    (data / "blue" / ".DS_Store").write_bytes(b"\0\0")
    os.symlink(data / "nowhere.png", data / "blue" / "gone.png")  # a link to nothing
    write_image(data / "loose.png", size=(16, 16), seed=92)  # outside a label folder
    (data / "green").mkdir()  # an empty label
    ds = {"name": "tiny", "kind": "folder", "path": "tiny", "options": {"resolution": 16, "val_fraction": 0.0}, **FAST,
          "patches": {**FAST["patches"], "window_px": 1000}}
    cfg = write_config(tmp_path, [ds])
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path), DIFFMINE_CONFIG=str(cfg))
    done = subprocess.run([sys.executable, "-m", "diffmine_assets.cli", "materialize", "--dataset", "tiny", "--select", "images",
                           "--select", "checkpoint", "--select", "image_typicality", "--select", "patch_typicality", "--label", "red"],
                          env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    said = [line for line in out.splitlines() if "not used:" in line]
    assert len(said) == 1, out[-3000:]
    for part in ("not used: 6 (", "hidden", "system file", "broken link", "not in a label folder", "not an image", "labels with no usable image: green"):
        assert part in said[0], (part, said[0])
    figures = json.loads(done.stdout.splitlines()[-1])
    assert sum(figures["not_used"]["files_by_reason"].values()) == 6 and figures["not_used"]["empty_labels"] == ["green"]
    # the window fits no image: the stage fails, naming the option and the sizes, and nothing empty is stored
    assert done.returncode == 1 and figures["failed_runs"] == 1
    assert "no patch: all 3 images are smaller than the 1000 px window (patches.window_px; the largest is 16x16 px)" in out, out[-3000:]
    assert not (tmp_path / "lake" / "patch_typicality").exists()
