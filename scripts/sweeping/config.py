"""The settings both sweeps share, read from the environment, and the exit statuses."""
import os
import re
from dataclasses import dataclass, field

# The repository root: the runs start there and relative paths (./save, ./save_t) mean it.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class ConfigError(Exception):
    """Bad configuration: reported as one line 'error: ...' and exit status 2."""


@dataclass
class Config:
    """The settings shared by both sweeps, read from the environment (sh's ${VAR:-default}:
    an empty variable counts as unset)."""
    gpus: list               # one entry per slot group: "0", or "0,1" with GPUS_PER_RUN=2
    jobs_per_gpu: int
    trials: int
    save_dir: str
    log_dir: str
    extra_args: list
    python: list
    dry_run: bool
    force: bool
    environ: dict = field(default_factory=dict)
    gpus_per_run: int = 1

    @property
    def launcher(self):
        """The command a run starts with: the interpreter, under torchrun for several GPUs."""
        if self.gpus_per_run == 1:
            return self.python
        return [*self.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                str(self.gpus_per_run)]

    @property
    def resume_args(self):
        """An interrupted or re-configured run continues from its latest.pth; FORCE=1 trains again."""
        return ["--overwrite"] if self.force else ["--resume", "auto"]


def env_value(environ, name, default):
    return environ.get(name) or default


def positive_int(environ, name):
    """TRIALS, JOBS_PER_GPU, GPUS_PER_RUN: digits, no leading zero (as the shell scripts accepted)."""
    text = env_value(environ, name, "1")
    if not re.fullmatch(r"[1-9][0-9]*", text):
        raise ConfigError(f"{name} must be a positive integer, got '{text}'")
    return int(text)


def words(text):
    """Lists in the environment are separated by commas and/or white space, never globbed."""
    return text.replace(",", " ").split()


def read_config(environ):
    gpus = words(env_value(environ, "GPUS", "0"))
    if not gpus:
        raise ConfigError("GPUS must list at least one GPU id, e.g. GPUS=0,1")
    jobs_per_gpu = positive_int(environ, "JOBS_PER_GPU")
    per_run = positive_int(environ, "GPUS_PER_RUN")
    if len(gpus) % per_run:
        raise ConfigError(f"GPUS_PER_RUN={per_run} must divide the {len(gpus)} GPUS ({','.join(gpus)}) into groups")
    gpus = [",".join(gpus[i:i + per_run]) for i in range(0, len(gpus), per_run)]
    trials = positive_int(environ, "TRIALS")
    save_dir = env_value(environ, "SAVE_DIR", "./save")
    python = env_value(environ, "PYTHON", "python").split()
    if not python:
        python = ["python"]
    return Config(gpus=gpus, jobs_per_gpu=jobs_per_gpu, trials=trials, save_dir=save_dir,
                  log_dir=env_value(environ, "LOG_DIR", f"{save_dir}/logs"),
                  extra_args=env_value(environ, "EXTRA_ARGS", "").split(), python=python,
                  dry_run=environ.get("DRY_RUN") == "1", force=environ.get("FORCE") == "1",
                  environ=dict(environ), gpus_per_run=per_run)
