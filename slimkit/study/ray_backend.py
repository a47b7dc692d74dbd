r"""Runs a study's runs as Ray Tune trials: on this machine or a cluster.

`compare_methods.py --backend=ray` hands the study here. Each run is one
Ray Tune trial (`tune.with_resources`: `cpus_per_run`, `gpus_per_run`) whose
function starts the run's ordinary training command (`runner.Study.argv`,
the same as the local backend's) in its own process group, follows the
validation points the run writes (`validation/` event files, read by
`results.scalars`) and reports them to Tune with the global step as the
time, so Tune's early-stopping schedulers can act on them. The run folders
are the local backend's, so results.csv, the report and the plots are too.

Faults: a trial whose node dies is started again (`max_failures`, Tune's
`FailureConfig`) and the training script resumes from the run's newest
checkpoint. A driver started again skips the finished runs (as the local
runner does) and resumes the others. A stopped trial (Ctrl-C, SIGTERM, an
early stop) gets its whole process group stopped: the training process
saves a checkpoint and exits; if the trial's process dies outright, the
training process gets SIGTERM from the kernel (`runner.die_with_parent`).

The study folder must be on storage every node sees at the same path:
`check_shared_storage` proves it at the start with a marker per node.
Nothing here imports Ray at module level: without Ray installed,
`import_ray` says how to install it.
"""

import dataclasses
import os
import signal
import socket
import subprocess
import time
import uuid
from typing import Callable, Optional

from slimkit import runs
from slimkit.study import runner

INSTALL = ('pip install -e ".[ray]" (from a clone) or '
           'pip install "ray[tune,train]"')
EARLY_STOPPING = {'asha': 'ASHA', 'median': 'the median stopping rule'}
METRIC = 'accuracy'  # what the trials report, with TIME_ATTR
TIME_ATTR = 'global_step'
# Marks a trial's last result, which repeats its last point: Tune checks
# that every result with a scheduler carries the metric, and the median
# rule reads the time of a trial's last result.
ENDED = 'run_ended'
# Ray's MedianStoppingRule compares a run with at least this many others
# (its default); a smaller study lowers it to its other runs.
MEDIAN_MIN_RUNS = 3
_MARKERS = '.ray_storage_check'
_POLL_SECS = 1.0
# How long a stopped run may take to save its checkpoint and exit before
# its process group is killed.
STOP_GRACE_SECS = 120


class BackendError(Exception):
  """What stops a Ray study before it trains: one line for the user."""


def import_ray():
  """Ray and Ray Tune, or a `BackendError` that says how to install them."""
  try:
    import ray
    from ray import tune
  except ImportError as e:
    raise BackendError(f'--backend=ray needs Ray Tune ({e}); install it with '
                       f'{INSTALL}.') from e
  return ray, tune


@dataclasses.dataclass(frozen=True)
class RayOptions:
  """How the study uses Ray (compare_methods.py's flags of the same names).

  Attributes:
    address: The cluster to join (None: the local Ray, started if needed).
    cpus_per_run: CPUs each run reserves (per worker with `workers_per_run`).
    gpus_per_run: GPUs each run reserves (per worker likewise).
    max_failures: Restarts of a trial whose node or process died.
    early_stopping: 'none', 'asha' or 'median'.
    grace_period_steps: Steps before a run can be stopped early.
    reduction_factor: ASHA's reduction factor.
    parallel: Trials at a time (None: as many as the cluster fits).
    workers_per_run: Workers of each run (1: a single process).
  """
  address: Optional[str] = None
  cpus_per_run: float = 1
  gpus_per_run: float = 0
  max_failures: int = 2
  early_stopping: str = 'none'
  grace_period_steps: Optional[int] = None
  reduction_factor: int = 4
  parallel: Optional[int] = None
  workers_per_run: int = 1


def is_done(study, run, early_stopping):
  """Whether a (re)started study skips `run`: finished, or stopped early
  while early stopping is still asked for."""
  if runner.is_finished(study, run):
    return True
  state = runner.read_status(study.run_dir(run)).get('state')
  return early_stopping != 'none' and state == runner.STOPPED_EARLY


def check_shared_storage(ray, study_dir):
  """Proves that every alive node reads and writes `study_dir`.

  The driver writes a token; a task pinned to each node reads it and
  writes the node's marker with it; the driver reads the markers back.

  Raises:
    BackendError: naming the first node that does not see the driver's
      files, or whose files the driver does not see.
  """
  from ray.util import scheduling_strategies
  folder = os.path.join(study_dir, _MARKERS)
  os.makedirs(folder, exist_ok=True)
  token = uuid.uuid4().hex
  with open(os.path.join(folder, 'driver'), 'w') as f:
    f.write(token)

  @ray.remote(num_cpus=0, max_retries=0)
  def probe(folder, token, node_id):
    try:
      with open(os.path.join(folder, 'driver')) as f:
        seen = f.read()
    except OSError as e:
      return f'cannot read the driver\'s marker ({e})'
    if seen != token:
      return 'reads another folder of the same path (an old marker)'
    with open(os.path.join(folder, node_id), 'w') as f:
      f.write(token)
    return None

  nodes = [n for n in ray.nodes() if n['Alive']]
  problems = ray.get([probe.options(
      scheduling_strategy=scheduling_strategies.NodeAffinitySchedulingStrategy(
          n['NodeID'], soft=False)).remote(folder, token, n['NodeID'])
                      for n in nodes], timeout=300)
  for node, problem in zip(nodes, problems):
    if problem is None:
      try:
        with open(os.path.join(folder, node['NodeID'])) as f:
          if f.read() != token:
            problem = 'wrote a marker the driver reads another version of'
      except OSError:
        problem = 'wrote a marker the driver cannot see'
    if problem:
      raise BackendError(
          f'--study_dir={study_dir} is not on storage every Ray node sees: '
          f'node {node["NodeManagerAddress"]} {problem}; put the study on a '
          'filesystem mounted at the same path on every node (NFS, a '
          'cluster filesystem, a shared volume).')


class ProcessGroup:
  """A training process that leads its own process group.

  `stop` sends SIGTERM to the whole group (the run saves a checkpoint and
  exits) and SIGKILL if it has not exited in `STOP_GRACE_SECS`.
  """

  def __init__(self, argv, log_path, cwd=None, env=None):
    with open(log_path, 'a') as out:
      # Its own session: stopping the trial stops the whole group (Ray kills
      # only the trial's own process); die_with_parent for a trial process
      # killed outright.
      self.process = subprocess.Popen(
          argv, stdout=out, stderr=subprocess.STDOUT, env=env,
          cwd=cwd if cwd and os.path.isdir(cwd) else None,
          start_new_session=True, preexec_fn=runner.die_with_parent)

  def poll(self):
    return self.process.poll()

  def wait(self, timeout=None):
    return self.process.wait(timeout)

  def stop(self):
    if self.process.poll() is not None:
      return
    for signum, wait in ((signal.SIGTERM, STOP_GRACE_SECS),
                         (signal.SIGKILL, 30)):
      try:
        os.killpg(self.process.pid, signum)
      except ProcessLookupError:
        return
      try:
        self.process.wait(wait)
        return
      except subprocess.TimeoutExpired:
        pass


def trained_to_the_end(study, run):
  """Whether `run`'s newest checkpoint is at its last step.

  The trainer validates at the last step before it saves that checkpoint,
  so such a run is finished whatever stopped its process afterwards (a
  scheduler's stop decided on an earlier point arrives while the run
  exits).
  """
  return (runs.checkpoint_step(study.run_dir(run)) >=
          study.max_number_of_steps)


def _validation_points(run_dir):
  """`[(step, accuracy)]` the run has validated, by step."""
  return [(point.step, point.value) for point in runs.scalars(
      os.path.join(run_dir, runs.VALIDATION_DIR), 'eval/Accuracy')]


class RunFollower:
  """One run as a trial: starts it, hands out its validation points, and
  records in `study_run.json` how it ended when it ends by itself.

  Tune's class API drives it: `next_result` is a trial's `step` (it blocks
  until the run validates or ends), `close` its `cleanup` (Tune waits for
  it before it ends the trial's process, which takes its direct children
  with it: so the run is stopped and saves its checkpoint first).
  """

  def __init__(self, study, run, start_training, node=None):
    """Starts the run.

    Args:
      study: The `runner.Study`.
      run: The `grid.Run`.
      start_training: Called with the run's argv and folder; returns the
        started run (`ProcessGroup`, or its multi-worker counterpart).
      node: The Ray node's id, recorded in `study_run.json`.
    """
    self.study, self.run, self.node = study, run, node
    self.run_dir = study.run_dir(run)
    os.makedirs(self.run_dir, exist_ok=True)
    self.status = runner.read_status(self.run_dir)
    self.segments = self.status.get('segments', [])
    log = os.path.join(self.run_dir, 'train.log')
    if (self.segments and self.segments[-1][1] <= self.segments[-1][0] and
        os.path.exists(log)):
      # Its last trial died without closing its segment: it trained until
      # its log's last line.
      self.segments[-1][1] = max(self.segments[-1][0], os.path.getmtime(log))
    self.start = time.time()
    self._write(state=runner.RUNNING, segments=self.segments + [
        [self.start, self.start]])
    self.child = start_training(study.argv(run), self.run_dir)
    self.last = -1  # the last step handed out
    self.last_accuracy = float('nan')
    self.ended = False

  def _write(self, **status):
    runner.write_status(self.run_dir, dict(
        self.status, node=socket.gethostname(), ray_node=self.node,
        **status))

  def _record_end(self):
    returncode = self.child.wait()
    step = runs.checkpoint_step(self.run_dir)
    max_steps = self.study.max_number_of_steps
    if returncode == 0 and step >= max_steps:
      state, error = runner.FINISHED, None
    else:
      state = runner.FAILED
      error = (self._error_line() if returncode
               else f'stopped at global step {step} of {max_steps}')
    self._write(state=state, error=error, returncode=returncode,
                global_step=step,
                segments=self.segments + [[self.start, time.time()]])

  def _error_line(self):
    try:
      with open(os.path.join(self.run_dir, 'train.log'),
                errors='replace') as f:
        return runner.error_line(f.readlines()[-40:])
    except OSError as e:
      return str(e)

  def next_result(self):
    """The next validation point, `{TIME_ATTR, METRIC, 'done'}`; when the
    run ended without another, the last one again with `done` and `ENDED`
    (a run that never validated: step 0, accuracy NaN)."""
    while True:
      ended = self.child.poll() is not None
      if ended and not self.ended:
        # Recorded before the last point is handed out: a scheduler may
        # stop the trial as it reads it.
        self._record_end()
        self.ended = True
      for step, accuracy in _validation_points(self.run_dir):
        if step > self.last and (
            ended or step < self.study.max_number_of_steps):
          self.last, self.last_accuracy = step, accuracy
          return {TIME_ATTR: step, METRIC: accuracy, 'done': False}
      if ended:
        return {TIME_ATTR: max(self.last, 0), METRIC: self.last_accuracy,
                ENDED: True, 'done': True}
      time.sleep(_POLL_SECS)

  def close(self):
    """Stops the run's process group if it still runs (it saves) and ends
    its time segment."""
    if self.child.poll() is not None:  # it ended by itself
      if not self.ended:
        self._record_end()
        self.ended = True
      return
    self.child.stop()
    status = runner.read_status(self.run_dir)
    if trained_to_the_end(self.study, self.run):
      status.update(state=runner.FINISHED, error=None)
      for key in ('stopped_by', 'stopped_at'):
        status.pop(key, None)
    elif status.get('state') == runner.RUNNING:  # else the driver said why
      status['state'] = runner.STOPPED
    segments = status.get('segments') or [[self.start, self.start]]
    segments[-1][1] = time.time()
    runner.write_status(self.run_dir, dict(
        status, segments=segments,
        global_step=runs.checkpoint_step(self.run_dir)))


def median_min_runs(runs):
  """The median rule's `min_samples_required` for a study of `runs` runs:
  Ray's 3, or every other run of a smaller study (at least 1)."""
  return max(1, min(MEDIAN_MIN_RUNS, runs - 1))


def _scheduler(tune, options, max_steps, stopped, runs):
  """The early-stopping scheduler (None without), which also records in
  `stopped` the step at which it stops a run.

  Args:
    tune: `ray.tune`.
    options: `RayOptions`.
    max_steps: The runs' last step (ASHA's `max_t`).
    stopped: `{run name: step}`, filled as runs are stopped.
    runs: How many runs the study trains (the median rule's sample).
  """
  if options.early_stopping == 'none':
    return None
  grace = min(options.grace_period_steps or 1, max_steps)
  schedulers = tune.schedulers
  if options.early_stopping == 'asha':
    base = schedulers.ASHAScheduler
    kwargs = dict(max_t=max_steps, grace_period=grace,
                  reduction_factor=options.reduction_factor)
  else:
    base = schedulers.MedianStoppingRule
    # hard_stop: a stopped run ends (a paused one would come back at the
    # end of the study and train on).
    kwargs = dict(grace_period=grace, hard_stop=True,
                  min_samples_required=median_min_runs(runs))

  class Recording(base):

    def on_trial_result(self, tune_controller, trial, result):
      decision = super().on_trial_result(tune_controller, trial, result)
      if decision == schedulers.TrialScheduler.PAUSE:
        # The median rule pauses a run it cannot judge yet (too few other
        # runs at its step) when others wait: that would stop its training
        # process and start it again later (TensorFlow's start, a restore)
        # only to gather samples sooner. It trains on.
        decision = schedulers.TrialScheduler.CONTINUE
      if (decision == schedulers.TrialScheduler.STOP and
          not result.get(ENDED) and
          result.get(TIME_ATTR, max_steps) < max_steps):
        stopped[trial.config['run']] = result[TIME_ATTR]
      return decision

  Recording.__name__ = base.__name__  # as Tune's summary names it
  return Recording(time_attr=TIME_ATTR, metric=METRIC, mode='max', **kwargs)


def _recorder(tune, **hooks):
  """A Tune callback on the driver that hands trial events to `hooks`
  (`ended(trial, error=None)`, `retried(trial)`, `log(line)`)."""

  class Recorder(tune.Callback):
    """Records on the driver what only the driver knows (early stops)."""

    def __init__(self, hooks):  # an argument: the class has no closure
      super().__init__()
      self.hooks = hooks

    def __getstate__(self):  # Tune pickles its settings: not the hooks
      return {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
      if METRIC not in result or result.get(ENDED):  # said already
        return
      self.hooks['log'](f'[study] {trial.config["run"]}: step '
                        f'{result[TIME_ATTR]}, validation accuracy '
                        f'{result[METRIC]:.4f}')

    def on_trial_recover(self, iteration, trials, trial, **info):
      self.hooks['retried'](trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
      self.hooks['ended'](trial)

    def on_trial_error(self, iteration, trials, trial, **info):
      error = trial.get_error()
      self.hooks['ended'](trial, error=error or 'unknown error')

  return Recorder(hooks)


def run_study(study, options, *, log=print,
              on_run_end: Optional[Callable] = None):
  """Trains every run of `study` not done yet as a Ray Tune trial.

  Args:
    study: The `runner.Study` (its `study_dir` absolute).
    options: `RayOptions`.
    log: Where progress lines go.
    on_run_end: Called with the run after each trial ends (the report).

  Returns:
    `{run name: state}` of the runs of this invocation.

  Raises:
    BackendError: without Ray, or when a node cannot see `study_dir`.
  """
  ray, tune = import_ray()
  if options.workers_per_run > 1:
    from slimkit.study import ray_workers
    start_training = ray_workers.starter(options, os.getcwd())
  else:
    start_training = None
  pending = [run for run in study.runs
             if not is_done(study, run, options.early_stopping)]
  if len(pending) < len(study.runs):
    log(f'[study] {len(study.runs) - len(pending)} of {len(study.runs)} '
        'runs are done already; skipping them.')
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  if not ray.is_initialized():
    # The workers import slimkit from this clone (or the installed package)
    # and log as the driver does.
    env = {'PYTHONPATH': os.pathsep.join(
        p for p in (root, os.environ.get('PYTHONPATH')) if p)}
    if 'TF_CPP_MIN_LOG_LEVEL' in os.environ:
      env['TF_CPP_MIN_LOG_LEVEL'] = os.environ['TF_CPP_MIN_LOG_LEVEL']
    ray.init(address=options.address, runtime_env={'env_vars': env},
             include_dashboard=False, log_to_driver=False,
             configure_logging=False)
  check_shared_storage(ray, study.study_dir)
  if not pending:
    return {}
  resources = ray.cluster_resources()
  nodes = sum(n['Alive'] for n in ray.nodes())
  log(f'[study] {len(pending)} run(s) on Ray: {nodes} node(s), '
      f'{resources.get("CPU", 0):g} CPU(s), {resources.get("GPU", 0):g} '
      f'GPU(s); each run {options.cpus_per_run:g} CPU(s), '
      f'{options.gpus_per_run:g} GPU(s)'
      f'{f" x {options.workers_per_run} workers" if start_training else ""}.')
  by_name = {run.name: run for run in study.runs}
  cwd = os.getcwd()

  class Trial(tune.Trainable):
    """A run (`RunFollower`) as a Tune trial."""

    def setup(self, config):
      start = start_training or (lambda argv, run_dir: ProcessGroup(
          argv, os.path.join(run_dir, 'train.log'), cwd, dict(os.environ)))
      self.follower = RunFollower(
          study, by_name[config['run']], start,
          node=ray.get_runtime_context().get_node_id())

    def step(self):
      return self.follower.next_result()

    def cleanup(self):
      self.follower.close()

    # The run's own train dir is its checkpoint (a restarted trial resumes
    # from it); Tune asks for one when it stops a trial.
    def save_checkpoint(self, checkpoint_dir):
      return {}

    def load_checkpoint(self, checkpoint):
      pass

  stopped = {}
  states = {}

  def ended(trial, error=None):
    """Records how a trial ended, unless the trial did (finished, failed)."""
    run = by_name[trial.config['run']]
    run_dir = study.run_dir(run)
    status = runner.read_status(run_dir)
    state = status.get('state')
    if state not in (runner.FINISHED, runner.FAILED):
      segments = status.get('segments') or [[time.time()] * 2]
      segments[-1][1] = time.time()
      if error is None and trained_to_the_end(study, run):
        state = runner.FINISHED  # a stop that came too late
      elif error is not None:
        state = runner.FAILED
        status.update(error=f'its trial failed {trial.num_failures} '
                      f'time(s); last: {str(error).strip().splitlines()[-1]}')
      elif run.name in stopped:
        state = runner.STOPPED_EARLY
        status.update(stopped_by=EARLY_STOPPING[options.early_stopping],
                      stopped_at=stopped[run.name])
      else:
        state = runner.STOPPED
      runner.write_status(run_dir, dict(status, state=state,
                                        segments=segments))
    states[run.name] = state
    how = (f' at step {stopped[run.name]} by '
           f'{EARLY_STOPPING[options.early_stopping]}'
           if state == runner.STOPPED_EARLY else '')
    log(f'[study {sum(s == runner.FINISHED for s in states.values())}/'
        f'{len(pending)} finished] {run.name}: {state}{how}')
    if on_run_end is not None:
      on_run_end(run)

  def retried(trial):
    log(f'[study] {trial.config["run"]}: its trial failed '
        f'({trial.num_failures} of {options.max_failures + 1} tries); '
        'starting it again, from its last checkpoint.')

  recorder = _recorder(tune, ended=ended, retried=retried, log=log)
  # Tune's own TensorBoard logger would put event files in study_dir, where
  # `tensorboard --logdir study_dir` would list them as runs: its JSON and
  # CSV loggers only.
  os.environ.setdefault('TUNE_DISABLE_AUTO_CALLBACK_LOGGERS', '1')
  from ray.tune import logger as tune_logger
  tuner = tune.Tuner(
      tune.with_resources(Trial, {'cpu': options.cpus_per_run,
                                  'gpu': options.gpus_per_run}
                          # The trial only waits on its workers' placement
                          # group: a token of memory, no CPU of theirs.
                          if not start_training else {'memory': 1}),
      param_space={'run': tune.grid_search([run.name for run in pending])},
      tune_config=tune.TuneConfig(
          scheduler=_scheduler(tune, options, study.max_number_of_steps,
                               stopped, len(pending)),
          max_concurrent_trials=options.parallel,
          trial_dirname_creator=lambda t: f'trial_{t.trial_id}'),
      run_config=tune.RunConfig(
          name=f'tune_{time.strftime("%Y%m%d_%H%M%S")}',
          storage_path=os.path.join(study.study_dir, 'ray_results'),
          failure_config=tune.FailureConfig(max_failures=options.max_failures),
          callbacks=[recorder, tune_logger.JsonLoggerCallback(),
                     tune_logger.CSVLoggerCallback()], verbose=0))
  # SIGTERM stops the study as Ctrl-C does (Tune handles SIGINT: it stops
  # the trials, whose training processes save a checkpoint).
  previous = signal.signal(signal.SIGTERM,
                           lambda *_: os.kill(os.getpid(), signal.SIGINT))
  try:
    tuner.fit()
  except KeyboardInterrupt:
    pass
  finally:
    signal.signal(signal.SIGTERM, previous)
    for run in pending:  # trials cut off by a stop leave 'running'
      status = runner.read_status(study.run_dir(run))
      if status.get('state') == runner.RUNNING:
        segments = status['segments']
        segments[-1][1] = time.time()
        runner.write_status(study.run_dir(run), dict(
            status, state=runner.STOPPED, segments=segments))
        states[run.name] = runner.STOPPED
  return states
