"""A multi-worker run of a Ray study (`--workers_per_run=N`).

Ray Train's `TensorflowTrainer` is used only to place N workers (with the
run's CPUs and GPUs each) and to set `TF_CONFIG` in each; every worker then
starts the run's ordinary training command as a subprocess in its own
process group, which reads `TF_CONFIG` as any multi-worker run does
(docs/distributed.md). Worker 0 writes `train.log`, worker i
`train.worker<i>.log`.

The trial stops the run by writing `STOP_FILE` in its folder (the folder is
on shared storage): each worker sends SIGTERM to its process group, and the
workers stop together at an agreed step and save (the trainer's rule).
"""

import os
import threading
import time

from slimkit.study import ray_backend

STOP_FILE = '.stop_workers'
_POLL_SECS = 0.5


def _worker_loop(config):
  """Ray Train's loop on each worker: the training command, until it ends
  or the trial asks it to stop."""
  import ray.train
  rank = ray.train.get_context().get_world_rank()
  run_dir = config['run_dir']
  log = os.path.join(run_dir, 'train.log' if rank == 0 else
                     f'train.worker{rank}.log')
  group = ray_backend.ProcessGroup(config['argv'], log, config['cwd'],
                                   dict(os.environ))  # with TF_CONFIG
  stop_file = os.path.join(run_dir, STOP_FILE)
  while group.poll() is None:
    if os.path.exists(stop_file):
      group.stop()
      break
    time.sleep(_POLL_SECS)
  if group.wait() != 0:
    raise RuntimeError(f'worker {rank} of {config["argv"][1]}: exit status '
                       f'{group.wait()}; see {log}')


class WorkerGroup:
  """The N workers of one run, with `ray_backend.ProcessGroup`'s interface
  (`poll`, `wait`, `stop`), for `ray_backend.RunFollower`."""

  def __init__(self, argv, run_dir, cwd, options):
    from ray import train
    from ray.train import tensorflow
    self.stop_file = os.path.join(run_dir, STOP_FILE)
    if os.path.exists(self.stop_file):
      os.remove(self.stop_file)
    per_worker = {'CPU': options.cpus_per_run}
    if options.gpus_per_run:
      per_worker['GPU'] = options.gpus_per_run
    self.trainer = tensorflow.TensorflowTrainer(
        _worker_loop,
        train_loop_config={'argv': list(argv), 'run_dir': run_dir,
                           'cwd': cwd},
        scaling_config=train.ScalingConfig(
            num_workers=options.workers_per_run,
            use_gpu=bool(options.gpus_per_run),
            resources_per_worker=per_worker),
        run_config=train.RunConfig(
            storage_path=os.path.join(os.path.dirname(os.path.dirname(
                run_dir)), 'ray_results'),
            name=f'workers_{os.path.basename(run_dir)}_{int(time.time())}'))
    self.returncode = None
    self.thread = threading.Thread(target=self._fit, daemon=True)
    self.thread.start()

  def _fit(self):
    try:
      result = self.trainer.fit()
      self.returncode = 1 if result.error else 0
    except Exception:
      self.returncode = 1  # the workers' logs say why

  def poll(self):
    return self.returncode

  def wait(self, timeout=None):
    self.thread.join(timeout)
    return self.returncode

  def stop(self):
    if self.returncode is not None:
      return
    with open(self.stop_file, 'w') as f:
      f.write('stop')
    self.wait(ray_backend.STOP_GRACE_SECS + 60)


def starter(options, cwd):
  """`start_training` of `ray_backend.RunFollower` for multi-worker runs."""
  return lambda argv, run_dir: WorkerGroup(argv, run_dir, cwd, options)
