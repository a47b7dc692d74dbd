"""What a study's runs achieved, read from their folders.

Everything comes from what a training run writes, read by the public
reader of a run's folder, `slimkit.runs.read_results` (so folders trained
elsewhere, e.g. one cluster job per run, read the same):

* `validation/` event files: `eval/Accuracy` per validated step;
* the run's event files: `total_loss` and `images_per_sec` per log line;
* the newest checkpoint: the number of parameters;
* `study_run.json` (written by the runner, optional): the run's state, its
  error, and the wall-clock segments it trained in (for time on the x axis
  without the pauses between invocations).
"""

import dataclasses
import os
import re
from typing import Optional, Sequence, Tuple

import numpy as np

from slimkit import runs
from slimkit.study import runner

# How a run that stopped on a non-finite loss says so (the training script
# fails with `trainer.NonFiniteLossError`'s message; the runner keeps that
# line as the run's error).
_DIVERGED = re.compile(r'NaN or infinite at global step (\d+)')


@dataclasses.dataclass(frozen=True)
class RunResult:
  """One run's outcome.

  Attributes:
    name: The run's folder name.
    values: `((axis, value), ...)` of the grid.
    seed: Its `--random_seed`.
    state: 'finished', 'failed', 'stopped', 'stopped early', 'running' or
      'not started'.
    error: The failed run's error line, or None.
    stopped_by: What stopped it early ('ASHA', ...), or None.
    stopped_at: The global step it was stopped early at, or None.
    final_accuracy: Validation accuracy at the last validated step.
    best_accuracy: The highest validation accuracy, at `best_step`.
    best_step: Its global step.
    final_loss: The last logged total loss.
    images_per_sec: Median training images/s of the log lines.
    wall_time: Seconds of training (all invocations).
    parameters: Trainable parameters of the net.
    global_step: The newest checkpoint's step.
    accuracy: `((step, accuracy), ...)`.
    loss: `((step, loss), ...)`.
    accuracy_time: `((seconds of training, accuracy), ...)`.
    diverged_step: The global step whose loss or gradient was NaN or
      infinite, for a run that stopped on it (else None).
  """
  name: str
  values: Tuple[Tuple[str, str], ...]
  seed: int
  state: str
  error: Optional[str] = None
  stopped_by: Optional[str] = None
  stopped_at: Optional[int] = None
  final_accuracy: Optional[float] = None
  best_accuracy: Optional[float] = None
  best_step: Optional[int] = None
  final_loss: Optional[float] = None
  images_per_sec: Optional[float] = None
  wall_time: Optional[float] = None
  parameters: Optional[int] = None
  global_step: int = 0
  accuracy: tuple = ()
  loss: tuple = ()
  accuracy_time: tuple = ()
  diverged_step: Optional[int] = None

  @property
  def diverged(self):
    return self.diverged_step is not None


def diverged_step(error):
  """The step of a run's error line that says the loss diverged, or None."""
  found = _DIVERGED.search(error or '')
  return int(found.group(1)) if found else None


def _training_seconds(segments, wall_time):
  """Seconds of training before `wall_time`, counting only the segments."""
  total = 0.0
  for start, end in segments:
    total += max(0.0, min(end, wall_time) - start)
  return total


def read_run(run_dir, run):
  """Reads one run's folder into a `RunResult`.

  Args:
    run_dir: The run's folder.
    run: Its `grid.Run`.
  """
  status = runner.read_status(run_dir)
  state = status.get('state') or ('not started' if not os.path.isdir(run_dir)
                                  else runner.STOPPED)
  read = runs.read_results(run_dir)
  accuracy = [(p.step, p.metrics['Accuracy'], p.wall_time)
              for p in read.validation if 'Accuracy' in p.metrics]
  loss = [(s.step, s.value, s.wall_time) for s in read.losses]
  rates = [s.value for s in read.images_per_sec]
  segments = status.get('segments') or []
  wall_times = [w for _, _, w in loss + accuracy]
  if not segments and wall_times:  # trained elsewhere: its event times
    segments = [[min(wall_times), max(wall_times)]]
  # The running segment of a live run ends now.
  segments = [[start, end if end > start else max(wall_times + [start])]
              for start, end in segments]
  best = max(accuracy, key=lambda item: item[1]) if accuracy else None
  return RunResult(
      name=run.name, values=run.values, seed=run.seed, state=state,
      error=status.get('error'),
      # A run resumed after an early stop keeps these in its status.
      stopped_by=(status.get('stopped_by') if state == runner.STOPPED_EARLY
                  else None),
      stopped_at=(status.get('stopped_at') if state == runner.STOPPED_EARLY
                  else None),
      final_accuracy=accuracy[-1][1] if accuracy else None,
      best_accuracy=best[1] if best else None,
      best_step=best[0] if best else None,
      final_loss=read.final_loss,
      # The first log line includes tracing: leave it out when there are more.
      images_per_sec=float(np.median(rates[1:] or rates)) if rates else None,
      wall_time=(sum(end - start for start, end in segments)
                 if segments else None),
      parameters=read.parameters,
      global_step=read.global_step,
      accuracy=tuple((s, v) for s, v, _ in accuracy),
      loss=tuple((s, v) for s, v, _ in loss),
      accuracy_time=tuple((_training_seconds(segments, w), v)
                          for _, v, w in accuracy),
      diverged_step=(diverged_step(status.get('error'))
                     if state == runner.FAILED else None))


def read_study(study_dir, runs: Sequence):
  """`RunResult` of every run of the grid (also the ones not started)."""
  return [read_run(os.path.join(study_dir, 'runs', run.name), run)
          for run in runs]
