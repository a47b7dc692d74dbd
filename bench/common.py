"""Shared parts of the throughput benchmarks: one subprocess per measured run.

Each run is a fresh process (clean TensorFlow state, its own peak memory).
A run reports progress on stderr in the trainer's log format,

  global step 40: loss = 6.91 (0.512 sec/step, 62.5 images/sec)

and the parent reads these lines while the run goes on, sampling the child's
resident memory (VmRSS) at each, so memory growth across steps is seen.
Throughput counts only the intervals after `warmup` steps (tracing, first
allocations and the first summaries are excluded).
"""

import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEP_RE = re.compile(r'global step (\d+):.*?\(([\d.]+) sec/step')
# A measurement a child prints itself: `RESULT <name> <value>`.
RESULT_RE = re.compile(r'^RESULT (\S+) ([-\d.eE+]+)$')


@dataclasses.dataclass
class RunResult:
  """What one subprocess run measured.

  Attributes:
    name: The run's label.
    images_per_sec: Mean rate over the logged intervals after warm-up.
    steps: `[(global step, sec/step of the interval ending there, VmRSS MB)]`.
    peak_rss_mb: Peak resident memory of the process (getrusage ru_maxrss).
    returncode: The process's exit status.
    wall_sec: Wall-clock time of the whole process.
    log_tail: The last lines of its output (for failures).
    values: `{name: value}` of the child's `RESULT name value` lines.
    log: The whole output, when `run` was asked to keep it.
  """
  name: str
  images_per_sec: Optional[float]
  steps: List[Tuple[int, float, float]]
  peak_rss_mb: float
  returncode: int
  wall_sec: float
  log_tail: str
  values: dict = dataclasses.field(default_factory=dict)
  log: str = ''

  def rss_growth_mb(self, warmup):
    """VmRSS at the last logged step minus at the first one after warm-up."""
    after = [rss for step, _, rss in self.steps if step > warmup]
    if len(after) < 2:
      return None
    return after[-1] - after[0]


def _vm_rss_mb(pid):
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return float('nan')


def images_per_sec(steps, batch_size, warmup):
  """Mean images/s over the intervals that start at or after `warmup`.

  Args:
    steps: `[(step, sec_per_step, rss)]` of consecutive log lines.
    batch_size: Images per step.
    warmup: Steps excluded from the start.

  Returns:
    Images per second, or None without a measured interval.
  """
  total_steps = total_sec = 0.0
  previous = None
  for step, sec_per_step, _ in steps:
    if previous is not None and previous >= warmup:
      total_steps += step - previous
      total_sec += (step - previous) * sec_per_step
    previous = step
  if not total_sec:
    return None
  return batch_size * total_steps / total_sec


def run(name, argv, *, batch_size, warmup, env=None, poll_secs=0.2,
        keep_log=False):
  """Runs `argv` in a subprocess and measures it.

  Args:
    name: A label for the run.
    argv: The command (e.g. `[sys.executable, 'train_image_classifier.py',
      ...]`).
    batch_size: Images per step (to turn sec/step into images/s).
    warmup: Steps excluded from the rate.
    env: Extra environment variables.
    poll_secs: How often the child's log and memory are read.
    keep_log: Keep the whole output in the result's `log`.

  Returns:
    A `RunResult`.
  """
  child_env = dict(os.environ)
  child_env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  child_env['PYTHONPATH'] = ROOT + os.pathsep + child_env.get('PYTHONPATH', '')
  child_env.update(env or {})
  steps = []
  values = {}
  with tempfile.TemporaryFile('w+b') as log:
    start = time.time()
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                               cwd=ROOT, env=child_env)
    offset, pending = 0, ''
    while True:
      # wait4 reaps the child and reports its own rusage (peak RSS), which
      # RUSAGE_CHILDREN would mix with earlier runs.
      pid, status, usage = os.wait4(process.pid, os.WNOHANG)
      log.flush()
      log.seek(offset)
      text = log.read().decode('utf-8', 'replace')
      offset = log.tell()
      lines = (pending + text).split('\n')
      pending = lines.pop()
      rss = _vm_rss_mb(process.pid) if not pid else float('nan')
      for line in lines:
        match = STEP_RE.search(line)
        if match:
          steps.append((int(match.group(1)), float(match.group(2)), rss))
        match = RESULT_RE.match(line.strip())
        if match:
          values[match.group(1)] = float(match.group(2))
      if pid:
        break
      time.sleep(poll_secs)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - start
    log.seek(0)
    whole = log.read().decode('utf-8', 'replace')
    tail = '\n'.join(whole.splitlines()[-15:])
  return RunResult(name=name,
                   images_per_sec=images_per_sec(steps, batch_size, warmup),
                   steps=steps, peak_rss_mb=usage.ru_maxrss / 1024,
                   returncode=process.returncode, wall_sec=wall,
                   log_tail=tail, values=values,
                   log=whole if keep_log else '')


def load_average():
  """The 1-minute load average (the machine may be shared)."""
  return os.getloadavg()[0]


def machine():
  """A one-line description of the CPU, cores and TensorFlow version."""
  model = 'unknown CPU'
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          model = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  import tensorflow as tf
  import keras
  return (f'{model}, {os.cpu_count()} cores, TensorFlow {tf.__version__}, '
          f'Keras {keras.__version__}, Python {sys.version.split()[0]}')


def describe(result, warmup):
  """A short text of a run's memory: peak and growth after warm-up."""
  growth = result.rss_growth_mb(warmup)
  last = result.steps[-1][0] if result.steps else 0
  growth_text = ('n/a' if growth is None else
                 f'{growth:+.0f} MB (steps {warmup + 1}-{last})')
  return f'peak RSS {result.peak_rss_mb:.0f} MB, RSS growth {growth_text}'


def check(result):
  """Raises RuntimeError with the run's log tail when it failed."""
  if result.returncode != 0 or (result.images_per_sec is None and
                                 not result.values):
    raise RuntimeError(f'{result.name} failed (exit {result.returncode}, '
                       f'{len(result.steps)} step lines):\n{result.log_tail}')


# The study benchmarks (asha_savings.py, study_backends.py): lenet on the
# bundled digits, small enough for a loaded 2-core machine.
DIGITS_STUDY_FLAGS = (
    '--dataset_name=digits', '--model_name=lenet', '--batch_size=16',
    '--optimizer=momentum', '--learning_rate_decay_type=fixed',
    '--weight_decay=0', '--num_readers=1', '--num_preprocessing_threads=1',
    '--save_summaries_secs=100000')


def digits_records(directory):
  """Converts the bundled digits into `directory` (once) and returns it."""
  if not os.path.exists(os.path.join(directory, 'labels.txt')):
    from slimkit.datasets import digits
    digits.run(directory)
  return directory


def run_study(study_dir, flags):
  """Runs `compare_methods.py --study_dir=study_dir <flags>` to its end.

  Returns:
    `(wall seconds, {run: results.csv row})`.

  Raises:
    RuntimeError: with the output's tail when the study failed.
  """
  import csv
  argv = [sys.executable, os.path.join(ROOT, 'compare_methods.py'),
          f'--study_dir={study_dir}', *flags]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  start = time.time()
  result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                          env=env, check=False)
  wall = time.time() - start
  if result.returncode:
    raise RuntimeError(f'{" ".join(argv)} failed ({result.returncode}):\n'
                       + (result.stdout + result.stderr)[-4000:])
  with open(os.path.join(study_dir, 'results.csv')) as f:
    return wall, {row['run']: row for row in csv.DictReader(f)}
