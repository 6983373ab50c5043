"""scripts/lib/common.sh, the helpers sourced by eval_rep_STL10.sh, eval_rep_TinyImageNet200.sh,
run_few_shot.sh and fetch_teachers.sh (their own behaviour is tested in tests/test_eval_rep.py and
tests/scripts/test_sweep_scripts.py)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMON = REPO / "scripts" / "lib" / "common.sh"
SCRIPTS = ["eval_rep_STL10.sh", "eval_rep_TinyImageNet200.sh", "run_few_shot.sh", "fetch_teachers.sh"]
SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]  # sh is dash on Debian


def header(script):
    """The help a script promises: its comment from line 2 up to the first other line, '# ' dropped."""
    lines = []
    for line in script.read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "".join(line + "\n" for line in lines)


def sh(code, shell="sh", *args):
    """Run CODE in SHELL with common.sh sourced (as $1, then shifted away), ARGS as "$@"."""
    return subprocess.run([shell, "-c", f'. "$1" || exit 99\nshift\n{code}', "fake_script.sh", str(COMMON), *args],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_find_the_lib_from_another_directory(tmp_path, name, shell):
    """The lib is sourced relative to the script, not the current directory; the help stays the
    script's own header (not the lib's) and a bad argument is one line naming the script."""
    script = Path(os.path.relpath(REPO / "scripts" / name, tmp_path))
    assert not (tmp_path / "lib").exists() and ".." in script.parts
    res = subprocess.run([shell, str(script), "-h"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout == header(REPO / "scripts" / name) and res.stderr == ""
    res = subprocess.run([shell, str(script), "--bogus"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == (f"error: unknown argument '--bogus'; configure by environment variables, "
                          f"see: sh {script} -h\n")


@pytest.mark.parametrize("shell", SHELLS)
def test_show_command_prints_a_line_the_shell_reads_back(shell):
    words = ["eval_rep.py", "--path_s", "S:resnet8x4_T:resnet32x4 it's", "", "a=b,c@d%e+f"]
    res = sh('line=keep; PY="/opt/my py/python3"; EXTRA_ARGS="--device cuda:1"\n'
             'show_command "$@"; echo "line=$line"', shell, *words)
    assert res.returncode == 0, res.stderr
    printed, kept = res.stdout.splitlines()
    assert kept == "line=keep", "the helpers' variables must not clobber the script's"
    assert printed.startswith("'/opt/my py/python3' eval_rep.py --path_s 'S:resnet8x4_T:resnet32x4 it'\\''s' '' ")
    assert printed.endswith(" a=b,c@d%e+f --device cuda:1")
    back = subprocess.run([shell, "-c", f'for w in {printed}; do printf "%s\\n" "[$w]"; done'],
                          capture_output=True, text=True, timeout=30)
    assert back.stdout.splitlines() == [f"[{w}]" for w in ["/opt/my py/python3", *words, "--device", "cuda:1"]]


@pytest.mark.parametrize("shell", SHELLS)
def test_run_logged_returns_the_commands_status_and_keeps_the_log(shell, tmp_path):
    log = tmp_path / "logs" / "pair" / "run.log"
    res = sh(f'rc=keep; PY={shell}; EXTRA_ARGS="x  y"\n'
             f'run_logged "{log}" "resnet56 -> resnet20" -c \'echo "out $1 $2"; echo err >&2; exit 3\' arg0\n'
             'echo "status $? rc=$rc"', shell)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["out x y", "err", "status 3 rc=keep"]
    assert res.stderr == f"FAILED (exit 3): resnet56 -> resnet20; log: {log}\n"
    assert log.read_text() == "out x y\nerr\n"
    res = sh(f'PY=true; EXTRA_ARGS=""; run_logged "{log}" what; echo "status $?"', shell)
    assert (res.stdout, res.stderr) == ("status 0\n", "") and log.read_text() == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_errors_are_one_line_with_the_documented_status(shell):
    res = sh('die "3 run(s) failed"; echo not reached', shell)
    assert (res.returncode, res.stdout, res.stderr) == (1, "", "error: 3 run(s) failed\n")
    res = sh("usage_error \"PAIRS takes teacher:student pairs, got 'x'\"; echo not reached", shell)
    assert (res.returncode, res.stdout, res.stderr) == (2, "", "error: PAIRS takes teacher:student pairs, got 'x'\n")
    res = sh('PYTHON=""; PATH=/nonexistent; find_python; echo not reached', shell)
    assert (res.returncode, res.stderr) == (2, "error: no python on PATH; set PYTHON\n")
    res = sh('PYTHON="/my python"; find_python; echo "$PY"', shell)
    assert res.returncode == 0 and res.stdout == "/my python\n"
