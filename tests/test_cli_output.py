"""What a user sees: a progress bar with its total from the start, a summary at the end, a card that says what the
run used, fast --help and --version."""
import json
import re
import subprocess
import sys
import time

from conftest import invoke


def test_the_bar_shows_its_total_before_the_first_chunk_and_a_summary_ends_the_run(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    r = invoke(["run", "--gan", tiny_ckpt, "--out", out, "--num-images", "4", "--batch", "2", "--variants", "4",
                "--mix-from", "3", "--detector", "none"])
    assert r.exit_code == 0, r.output
    first_total = r.output.find("0/4")
    first_chunk = re.search(r"[1-4]/4", r.output).start()  # the first image counted
    assert 0 <= first_total < first_chunk, r.output  # the total is on screen before a chunk is done
    assert "loading" in r.output[:first_chunk]
    tail = r.output.strip().splitlines()[-3:]
    assert re.search(r"done in [\d.]+ s: 4 images, \d+ instances \(foreground \d+\), \d+ image\(s\) with none", tail[0])
    assert str(out) in tail[1] and tail[2].startswith("next: instseg report")


def test_the_card_states_the_values_the_run_used(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert invoke(["run", "--gan", tiny_ckpt, "--out", out, "--num-images", "2", "--variants", "4", "--mix-from", "3",
                   "--detector", "none", "--set", "box_k=0"]).exit_code == 0
    card = (out / "README.md").read_text()
    run = json.loads((out / "run.json").read_text())
    used = {**run["config"], **run["method_settings"]}
    shown = dict(re.findall(r"^- `(\w+)`: (.*)$", card, re.M))
    assert shown["box_k"] == str(used["box_k"]) == str(run["config"]["k"])  # 0 means "as --k": the card says 3
    for k, v in shown.items():
        if k in used:
            assert v == (",".join(map(str, used[k])) if isinstance(used[k], list) else str(used[k])), k
    assert "class_names" not in shown and "classes" not in shown  # empty fields are left out
    assert card.count("Licence") + card.count("licence") >= 1 and "Non-commercial" not in card  # custom: unknown
    assert "`score` of an instance" in card


def test_help_and_version_do_not_import_torch():
    code = ("import sys, runpy\nsys.argv = ['instseg', '--version']\n"
            "try:\n    runpy.run_module('instseg.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip().splitlines()[-1] == "False", p.stdout + p.stderr
    p = subprocess.run([sys.executable, "-c", code.replace("'--version'", "'run', '--help'")], capture_output=True,
                       text=True, timeout=60)
    assert p.stdout.strip().splitlines()[-1] == "False", p.stdout + p.stderr
    assert time.perf_counter() - t < 60


def test_a_converted_file_keeps_its_licence_and_an_unknown_one_is_not_called_non_commercial(tiny_ckpt, tmp_path):
    assert invoke(["convert", "toy-flat", tmp_path / "flat.pt"]).exit_code == 0
    assert invoke(["convert", tiny_ckpt, tmp_path / "mine.pt"]).exit_code == 0
    for name, expect in (("flat.pt", "MIT"), ("mine.pt", "unknown")):
        out = tmp_path / name.replace(".pt", "")
        r = invoke(["run", "--gan", tmp_path / name, "--out", out, "--num-images", "1", "--variants", "4",
                    "--mix-from", "3", "--detector", "none"])
        assert r.exit_code == 0, r.output
        card = (out / "README.md").read_text()
        assert expect in card and "Non-commercial" not in card, card[:400]
        assert card.lower().count("licence of the generator") == 1  # one licence statement
