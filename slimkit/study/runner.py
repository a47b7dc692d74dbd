"""Runs a study's runs as `train_image_classifier.py` processes.

Each run trains in `study_dir/runs/<name>/` with the study's base flags, its
varied values and `--random_seed`, so it is an ordinary training run. The
runner keeps `study_run.json` beside it (state, error, and the wall-clock
segments it trained in), and on a rerun:

* skips a finished run (its checkpoint of `--max_number_of_steps`);
* resumes an interrupted or failed one (the training script resumes from
  its newest checkpoint, continuing its random streams exactly);

so killing a study loses at most the steps since each run's last
checkpoint. A failed run is recorded with its error and does not stop the
others. Several runs at a time (`parallel`): on a machine with GPUs each run
gets its own (`CUDA_VISIBLE_DEVICES`), `num_clones` of them when it has
several clones. Progress (runs done, the current step of each, an ETA) goes
to `log`.

SIGTERM or Ctrl-C stops the study: its runs get SIGTERM, save a checkpoint
and stop, and the study returns without starting more. A study killed
outright takes its runs with it (Linux: they get SIGTERM when it dies).
"""

import ctypes
import dataclasses
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional, Sequence

from slimkit import runs
from slimkit.study import grid

STATUS_FILE = 'study_run.json'
FINISHED, FAILED, STOPPED, RUNNING = 'finished', 'failed', 'stopped', 'running'
# Stopped by an early-stopping scheduler (--backend=ray --early_stopping).
STOPPED_EARLY = 'stopped early'
# Progress display only: the step and loss of the live log's lines. Results
# are read from the run's folder (slimkit.runs), never from its log.
_STEP_LINE = re.compile(r'global step (\d+): loss = ([-\d.naif]+)')


@dataclasses.dataclass(frozen=True)
class Study:
  """What to run.

  Attributes:
    study_dir: The study's folder (`runs/`, reports).
    script: Path of `train_image_classifier.py`.
    base_flags: `{flag: value text}` of the training flags common to every
      run (without `train_dir`, `random_seed`, `model_options`).
    model_options: The base `--model_options` text ('' for none).
    axes: The checked `grid.Axis` list.
    runs: The `grid.Run` list.
    max_number_of_steps: Every run's last global step.
  """
  study_dir: str
  script: str
  base_flags: dict
  model_options: str
  axes: Sequence[grid.Axis]
  runs: Sequence[grid.Run]
  max_number_of_steps: int

  def run_dir(self, run):
    return os.path.join(self.study_dir, 'runs', run.name)

  def argv(self, run):
    """The training command of `run`."""
    flags = dict(self.base_flags)
    flags.update(run.flag_values(self.axes))
    options = grid.merge_model_options(self.model_options,
                                       run.model_option_values(self.axes))
    if options:
      flags['model_options'] = options
    recipe = flags.pop(grid.FLAGFILE, None)
    flags['train_dir'] = self.run_dir(run)
    flags['random_seed'] = str(run.seed)
    # A recipe's flags come after the base ones, which they override; the
    # run's own folder and seed after it.
    tail = [f'--{name}={flags.pop(name)}' for name in ('train_dir',
                                                       'random_seed')]
    return ([sys.executable, self.script] +
            [f'--{name}={value}' for name, value in flags.items()] +
            ([f'--{grid.FLAGFILE}={recipe}'] if recipe else []) + tail)


def read_status(run_dir):
  """The run's `study_run.json` as a dict ({} when there is none)."""
  try:
    with open(os.path.join(run_dir, STATUS_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def write_status(run_dir, status):
  """Replaces the run's `study_run.json` with `status` (atomically)."""
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, STATUS_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(status, f, indent=1)
  os.replace(path + '.tmp', path)  # never half-written


def is_finished(study, run):
  run_dir = study.run_dir(run)
  return (read_status(run_dir).get('state') == FINISHED and
          runs.checkpoint_step(run_dir) >= study.max_number_of_steps)


def gpu_slots(num_gpus, num_clones, parallel):
  """The devices of each concurrent run: a list of CUDA_VISIBLE_DEVICES.

  Args:
    num_gpus: GPUs of this machine (0: CPU only).
    num_clones: GPUs each run uses (`--num_clones`).
    parallel: Runs at a time asked for (None: one per free group of GPUs,
      1 on a CPU).

  Returns:
    One entry per concurrent run: a device list like '2,3', or None (the
    CPU, or GPUs as the process finds them).

  Raises:
    ValueError: when a run needs more GPUs than the machine has.
  """
  if not num_gpus:
    return [None] * (parallel or 1)
  if num_clones > num_gpus:
    raise ValueError(f'--num_clones={num_clones} needs {num_clones} GPUs; '
                     f'this machine has {num_gpus}.')
  groups = num_gpus // num_clones
  count = min(parallel or groups, groups)
  return [','.join(str(g) for g in range(i * num_clones,
                                         (i + 1) * num_clones))
          for i in range(count)]


def error_line(lines):
  """The line of a failed run's output that says what went wrong."""
  for line in reversed(lines):
    if 'error:' in line or 'Error' in line:
      return line.strip()
  return lines[-1].strip() if lines else 'no output'


try:  # Linux's prctl, looked up before any fork (see die_with_parent).
  _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
  _PRCTL = None
_PR_SET_PDEATHSIG = 1


def die_with_parent():
  """`preexec_fn` of a run: SIGTERM to it when its starting thread dies."""
  # In the child between fork and exec: the run gets SIGTERM (it saves and
  # stops) when the study's thread that started it dies. Only a C call
  # here: the child of a threaded process must not take Python's locks.
  if _PRCTL is not None:
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _follow(path, offset, child, poll_secs=0.5):
  """Yields the complete lines written to `path` after `offset` until
  `child` exits."""
  with open(path, errors='replace') as reader:
    reader.seek(offset)
    partial = ''
    while True:
      running = child.poll() is None
      for line in reader.readlines():
        line = partial + line
        partial = ''
        if not line.endswith('\n'):
          partial = line
          continue
        yield line
      if not running:
        if partial:
          yield partial
        return
      time.sleep(poll_secs)


class _Progress:
  """Runs done, steps of the running ones, an ETA; one line per update."""

  def __init__(self, study, pending, log):
    self.total = len(study.runs)
    self.done = self.total - len(pending)
    self.failed = 0
    self.max_steps = study.max_number_of_steps
    self.steps = {run.name: runs.checkpoint_step(study.run_dir(run))
                  for run in pending}
    self.first = dict(self.steps)
    self.start = time.time()
    self.log = log
    self.lock = threading.Lock()

  def eta(self):
    trained = sum(s - self.first[n] for n, s in self.steps.items())
    left = sum(self.max_steps - s for s in self.steps.values())
    if trained <= 0:
      return 'ETA unknown'
    seconds = (time.time() - self.start) * left / trained
    return f'ETA {datetime.timedelta(seconds=int(seconds))}'

  def step(self, name, step, loss):
    with self.lock:
      self.steps[name] = step
      self.log(f'[study {self.done}/{self.total} done'
               f'{f", {self.failed} failed" if self.failed else ""}] {name}: '
               f'step {step}/{self.max_steps}, loss {loss}; {self.eta()}')

  def finish(self, name, state, error=None):
    with self.lock:
      self.steps[name] = self.max_steps
      if state == FINISHED:
        self.done += 1
      elif state == FAILED:
        self.failed += 1
      self.log(f'[study {self.done}/{self.total} done'
               f'{f", {self.failed} failed" if self.failed else ""}] {name}: '
               f'{state}{f" ({error})" if error else ""}; {self.eta()}')


def run_study(study, *, slots=(None,), log=print,
              on_run_end: Optional[Callable] = None):
  """Trains every run of `study` that is not finished.

  Args:
    study: The `Study`.
    slots: The devices of each concurrent run (`gpu_slots`).
    log: Where progress lines go.
    on_run_end: Called with the run after each run ends (e.g. to rewrite
      the report).

  Returns:
    `{run name: state}` of the runs of this invocation.
  """
  pending = [run for run in study.runs if not is_finished(study, run)]
  if len(pending) < len(study.runs):
    log(f'[study] {len(study.runs) - len(pending)} of {len(study.runs)} '
        'runs are finished already; skipping them.')
  progress = _Progress(study, pending, log)
  queue = list(pending)
  states = {}
  children = {}
  lock = threading.Lock()
  stopping = threading.Event()

  def train(run, devices):
    run_dir = study.run_dir(run)
    status = read_status(run_dir)
    segments = status.get('segments', [])
    start = time.time()
    write_status(run_dir, dict(status, state=RUNNING,
                                segments=segments + [[start, start]]))
    env = dict(os.environ)
    if devices is not None:
      env['CUDA_VISIBLE_DEVICES'] = devices
    # The run writes its log to a file, which the study follows: killed,
    # the study leaves its runs with a complete log and no broken pipe.
    log_path = os.path.join(run_dir, 'train.log')
    with open(log_path, 'a') as out:
      offset = out.tell()
      child = subprocess.Popen(
          study.argv(run), stdout=out, stderr=subprocess.STDOUT, env=env,
          preexec_fn=die_with_parent)
    with lock:
      children[run.name] = child
    tail = []
    for line in _follow(log_path, offset, child):
      tail = (tail + [line])[-40:]
      found = _STEP_LINE.search(line)
      if found:
        progress.step(run.name, int(found.group(1)), found.group(2))
    returncode = child.wait()
    with lock:
      children.pop(run.name, None)
    step = runs.checkpoint_step(run_dir)
    if returncode == 0 and step >= study.max_number_of_steps:
      state, error = FINISHED, None
    elif stopping.is_set():
      state, error = STOPPED, None
    else:
      state = FAILED
      error = (error_line(tail) if returncode else
               f'stopped at global step {step} of '
               f'{study.max_number_of_steps}')
    write_status(run_dir, dict(
        status, state=state, error=error, returncode=returncode,
        global_step=step, segments=segments + [[start, time.time()]]))
    states[run.name] = state
    progress.finish(run.name, state, error)
    if on_run_end is not None:
      on_run_end(run)

  def worker(devices):
    while not stopping.is_set():
      with lock:
        if not queue:
          return
        run = queue.pop(0)
      train(run, devices)

  def stop(signum, frame):
    del frame
    if not stopping.is_set():
      log(f'[study] {signal.Signals(signum).name}: stopping the running '
          'runs (they save a checkpoint); rerun the command to resume.')
    stopping.set()
    with lock:
      for child in children.values():
        child.send_signal(signal.SIGTERM)

  previous = {}
  if threading.current_thread() is threading.main_thread():
    for signum in (signal.SIGTERM, signal.SIGINT):
      previous[signum] = signal.signal(signum, stop)
  try:
    threads = [threading.Thread(target=worker, args=(devices,), daemon=True)
               for devices in slots]
    for thread in threads:
      thread.start()
    for thread in threads:
      while thread.is_alive():  # join with a timeout: signals get through
        thread.join(0.2)
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
  return states
