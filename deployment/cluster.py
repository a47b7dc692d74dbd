"""Which cluster this process belongs to: TF-Slim's flags or `TF_CONFIG`.

TF-Slim's users started the same script on every machine with `--task`,
`--worker_replicas` and `--num_ps_tasks`; `tf.distribute` users set the
`TF_CONFIG` environment variable. Both name the same thing, a cluster and this
process's task in it, and `resolve()` reads either one:

  cluster = cluster_lib.resolve(worker_hosts='host0:2222,host1:2222', task=1)
  cluster.mode        # 'multi_worker'
  cluster.is_chief    # False: worker 0 is the chief
  cluster.tf_config() # {'cluster': {'worker': [...]}, 'task': {...}}

Modes:
* `local`: no cluster; clones on this machine only.
* `multi_worker`: several workers (optionally a `chief` job, as `TF_CONFIG`
  allows) train synchronously with `MultiWorkerMirroredStrategy`; worker 0
  (or the chief) writes checkpoints and summaries.
* `parameter_server`: `ps` and `worker` jobs serve variables and run steps;
  one more process, the coordinator (`--job_name=chief`), drives training
  with `ParameterServerStrategy` (asynchronous, as TF-Slim without
  `--sync_replicas`).
"""

import dataclasses
import json
import os
import re
from typing import Mapping, Tuple

LOCAL = 'local'
MULTI_WORKER = 'multi_worker'
PARAMETER_SERVER = 'parameter_server'

# The job names of `TF_CONFIG` that this toolkit runs.
JOB_NAMES = ('chief', 'worker', 'ps')


class ClusterError(ValueError):
  """A cluster description that is inconsistent or incomplete."""


@dataclasses.dataclass(frozen=True)
class Cluster:
  """A cluster and this process's task in it.

  Attributes:
    jobs: Job name -> host:port addresses, e.g. `{'worker': ('a:1', 'b:1')}`;
      empty when training on this machine only.
    task_type: This process's job ('worker', 'ps', 'chief'); '' when local.
    task_id: This process's index in its job.
  """
  jobs: Mapping[str, Tuple[str, ...]] = dataclasses.field(
      default_factory=dict)
  task_type: str = ''
  task_id: int = 0

  def __post_init__(self):
    object.__setattr__(self, 'jobs', {k: tuple(v)
                                      for k, v in dict(self.jobs).items()})
    unknown = sorted(set(self.jobs) - set(JOB_NAMES) - {'evaluator'})
    if unknown:
      raise ClusterError(f'Unknown job name(s) {unknown} in the cluster; valid '
                         f'job names: {", ".join(JOB_NAMES)}.')
    if not self.jobs:
      if self.task_type:
        raise ClusterError(f'Task type {self.task_type!r} given without a '
                           'cluster (--worker_hosts or TF_CONFIG).')
      return
    # With parameter servers the coordinator ('chief') need not be listed:
    # TensorFlow adds it on its own host.
    coordinator = self.task_type == 'chief' and self.jobs.get('ps')
    if self.task_type not in self.jobs and not coordinator:
      raise ClusterError(
          f'This task\'s job {self.task_type!r} (--job_name) is not in the '
          f'cluster, whose jobs are {", ".join(sorted(self.jobs))}.')
    count = len(self.jobs.get(self.task_type, ('',)))
    if not 0 <= self.task_id < count:
      raise ClusterError(
          f'--task={self.task_id} is out of range: job {self.task_type!r} has '
          f'{count} task(s) ({", ".join(self.jobs[self.task_type])}).')
    if len(self.jobs.get('chief', ())) > 1:
      raise ClusterError('A cluster has at most one chief, got '
                         f'{list(self.jobs["chief"])}.')
    if self.jobs.get('ps') and not self.jobs.get('worker'):
      raise ClusterError('Parameter servers need workers: pass --worker_hosts '
                         'too.')
    for job, hosts in self.jobs.items():
      for host in hosts:
        _check_address(host, job)

  @property
  def mode(self):
    """'local', 'multi_worker' or 'parameter_server'."""
    if not self.jobs:
      return LOCAL
    return PARAMETER_SERVER if self.jobs.get('ps') else MULTI_WORKER

  @property
  def num_workers(self):
    """Processes that run training steps (the chief counts in multi-worker)."""
    if not self.jobs:
      return 1
    workers = len(self.jobs.get('worker', ()))
    if self.mode == MULTI_WORKER:
      workers += len(self.jobs.get('chief', ()))
    return workers

  @property
  def num_ps(self):
    return len(self.jobs.get('ps', ()))

  @property
  def worker_index(self):
    """This process's index among the training workers (chief first)."""
    if self.mode == MULTI_WORKER and self.task_type == 'worker':
      return self.task_id + len(self.jobs.get('chief', ()))
    return self.task_id

  @property
  def is_chief(self):
    """Whether this process writes checkpoints and summaries to train_dir."""
    if self.mode == LOCAL:
      return True
    if self.mode == PARAMETER_SERVER:
      return self.task_type == 'chief'
    if self.jobs.get('chief'):
      return self.task_type == 'chief'
    return self.task_type == 'worker' and self.task_id == 0

  @property
  def serves_only(self):
    """Whether this process only serves (a ps, or a worker of a ps cluster)."""
    return self.mode == PARAMETER_SERVER and self.task_type in ('ps', 'worker')

  def tf_config(self):
    """The `TF_CONFIG` dictionary of this task."""
    return {'cluster': {k: list(v) for k, v in self.jobs.items()},
            'task': {'type': self.task_type, 'index': self.task_id}}

  def cluster_resolver(self):
    """A `tf.distribute.cluster_resolver.ClusterResolver` of this task."""
    import tensorflow as tf
    jobs = {k: list(v) for k, v in self.jobs.items()}
    if self.task_type == 'chief' and 'chief' not in jobs:
      # The coordinator dials the servers, never the other way round, so its
      # own address is known only here: any free port of this host.
      jobs['chief'] = [f'localhost:{free_port()}']
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(jobs), task_type=self.task_type,
        task_id=self.task_id, rpc_layer='grpc')

  def serve(self):
    """Runs this task's server until the process is killed (ps and workers
    of a parameter-server cluster: the coordinator sends them the work)."""
    import tensorflow as tf
    if not self.serves_only:
      raise ClusterError(f'{self.describe()} does not only serve; it trains.')
    server = tf.distribute.Server(
        tf.train.ClusterSpec({k: list(v) for k, v in self.jobs.items()}),
        job_name=self.task_type, task_index=self.task_id, protocol='grpc',
        start=True)
    server.join()

  def describe(self):
    """One line for logs: 'worker 1 of a multi_worker cluster (2 worker)'."""
    if self.mode == LOCAL:
      return 'local (no cluster)'
    jobs = ', '.join(f'{len(h)} {j}' for j, h in sorted(self.jobs.items()))
    return f'{self.task_type} {self.task_id} of a {self.mode} cluster ({jobs})'


def free_port(host='localhost'):
  """A TCP port of `host` that nothing listens on right now."""
  import socket
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    sock.bind((host, 0))
    return sock.getsockname()[1]


def _check_address(host, job):
  name, sep, port = host.rpartition(':')
  if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
    raise ClusterError(f'Address {host!r} of job {job!r} is not host:port '
                       '(e.g. 10.0.0.1:2222).')


def parse_hosts(value, flag_name='--worker_hosts'):
  """Splits 'host:port,host:port' into a tuple of addresses.

  Raises:
    ClusterError: for an empty entry or an address without a port.
  """
  if not value:
    return ()
  hosts = tuple(h.strip() for h in value.split(','))
  for host in hosts:
    if not host:
      raise ClusterError(f'{flag_name}={value!r} has an empty entry.')
    _check_address(host, flag_name.lstrip('-').replace('_hosts', ''))
  if len(set(hosts)) != len(hosts):
    raise ClusterError(f'{flag_name}={value!r} lists an address twice.')
  return hosts


def from_tf_config(value):
  """Parses a `TF_CONFIG` JSON string into a `Cluster`.

  Raises:
    ClusterError: when it is not valid JSON or lacks the cluster or task.
  """
  try:
    config = json.loads(value)
  except json.JSONDecodeError as e:
    raise ClusterError(
        f'TF_CONFIG is not valid JSON ({e}): {value!r}') from None
  if not isinstance(config, dict) or not config.get('cluster'):
    raise ClusterError(f'TF_CONFIG has no "cluster": {value!r}')
  task = config.get('task') or {}
  return Cluster(jobs={k: tuple(v) for k, v in config['cluster'].items()},
                 task_type=task.get('type', ''),
                 task_id=int(task.get('index', 0)))


def resolve(*, worker_hosts='', ps_hosts='', job_name=None, task=0,
            worker_replicas=1, num_ps_tasks=0, environ=None):
  """The cluster of this process, from TF-Slim's flags or `TF_CONFIG`.

  Giving both `--worker_hosts`/`--ps_hosts` and a `TF_CONFIG` is refused,
  since they could disagree.

  Args:
    worker_hosts: '--worker_hosts', comma-separated host:port of the workers.
    ps_hosts: '--ps_hosts', comma-separated host:port of parameter servers.
    job_name: '--job_name': 'worker', 'ps' or 'chief' (the coordinator with
      parameter servers); default 'worker', or 'chief' with parameter servers.
    task: '--task', this process's index in its job.
    worker_replicas: '--worker_replicas'; 1 (the default) means "as many as
      the cluster lists", otherwise it must match.
    num_ps_tasks: '--num_ps_tasks'; 0 (the default) means "as many as
      `ps_hosts` lists", otherwise it must match.
    environ: The environment to read `TF_CONFIG` from (default os.environ).

  Returns:
    A `Cluster`.

  Raises:
    ClusterError: naming the flags that disagree or are missing.
  """
  environ = os.environ if environ is None else environ
  tf_config = environ.get('TF_CONFIG', '')
  workers = parse_hosts(worker_hosts, '--worker_hosts')
  ps = parse_hosts(ps_hosts, '--ps_hosts')
  if (workers or ps) and tf_config:
    raise ClusterError('Both --worker_hosts/--ps_hosts and the TF_CONFIG '
                       'environment variable name a cluster; use one of them.')
  if tf_config:
    cluster = from_tf_config(tf_config)
    if job_name and job_name != cluster.task_type:
      raise ClusterError(f'--job_name={job_name} but TF_CONFIG says task type '
                         f'{cluster.task_type!r}.')
  elif workers or ps:
    if ps and not workers:
      raise ClusterError('--ps_hosts needs --worker_hosts too.')
    jobs = {'worker': workers}
    if ps:
      jobs['ps'] = ps
      job_name = job_name or 'chief'
      if job_name == 'chief':
        if task != 0:
          raise ClusterError(f'--job_name=chief (the coordinator) takes '
                             f'--task=0, got --task={task}.')
        return _checked(Cluster(jobs=jobs, task_type='chief', task_id=0),
                        worker_replicas, num_ps_tasks)
    job_name = job_name or 'worker'
    if job_name not in jobs:
      raise ClusterError(
          f'--job_name={job_name} is not a job of this cluster; valid: '
          f'{", ".join(sorted(jobs) + (["chief"] if ps else []))}.')
    cluster = Cluster(jobs=jobs, task_type=job_name, task_id=task)
  else:
    if worker_replicas > 1 or num_ps_tasks > 0:
      raise ClusterError(
          f'--worker_replicas={worker_replicas} --num_ps_tasks={num_ps_tasks} '
          'need the cluster\'s addresses: pass --worker_hosts (and '
          '--ps_hosts), or set TF_CONFIG.')
    if job_name not in (None, '', 'worker') or task != 0:
      raise ClusterError(f'--job_name={job_name} --task={task} need a '
                         'cluster: pass --worker_hosts, or set TF_CONFIG.')
    return Cluster()
  return _checked(cluster, worker_replicas, num_ps_tasks)


def _checked(cluster, worker_replicas, num_ps_tasks):
  if worker_replicas != 1 and worker_replicas != cluster.num_workers:
    raise ClusterError(f'--worker_replicas={worker_replicas} but the cluster '
                       f'has {cluster.num_workers} worker(s).')
  if num_ps_tasks and num_ps_tasks != cluster.num_ps:
    raise ClusterError(f'--num_ps_tasks={num_ps_tasks} but the cluster has '
                       f'{cluster.num_ps} parameter server(s) (--ps_hosts).')
  return cluster


_PEER_RE = re.compile(r'/job:(\w+)/replica:\d+/task:(\d+)')
_PEER_WORDS_RE = re.compile(r'collective|coordination|heartbeat|peer|'
                            r'connection reset|socket closed', re.IGNORECASE)
# What TensorFlow raises when a peer is lost or a collective times out.
_PEER_ERRORS = ('UnavailableError', 'DeadlineExceededError', 'CancelledError',
                'AbortedError')


def is_peer_error(error):
  """Whether a `tf.errors.OpError` means a lost peer or a collective timeout."""
  if type(error).__name__ in _PEER_ERRORS:
    return True
  return bool(_PEER_WORDS_RE.search(str(getattr(error, 'message', error))))


def explain_peer_error(cluster, error, timeout_secs=None):
  """A clear message for a collective or RPC error of a multi-worker run.

  Args:
    cluster: This process's `Cluster`.
    error: The `tf.errors.OpError` training stopped with.
    timeout_secs: The collective timeout in force (None: none).

  Returns:
    A message naming the lost peer (job, task and address) when TensorFlow's
    error names one, the timeout, and how to recover.
  """
  text = str(getattr(error, 'message', '') or error)
  peers = []
  for job, task in _PEER_RE.findall(text):
    hosts = cluster.jobs.get(job, ())
    address = hosts[int(task)] if int(task) < len(hosts) else '?'
    peer = f'{job} {task} ({address})'
    if (job, int(task)) != (cluster.task_type, cluster.task_id) and (
        peer not in peers):
      peers.append(peer)
  who = ('lost contact with ' + ', '.join(peers) if peers
         else 'lost contact with a peer')
  timeout = (f'collectives wait at most {timeout_secs:g} s'
             if timeout_secs else 'no collective timeout set')
  first_line = next((line.strip() for line in text.splitlines()
                     if 'Collective' in line or 'peer' in line.lower()),
                    text.strip().splitlines()[0] if text.strip() else '')
  return (f'{cluster.task_type} {cluster.task_id} {who} '
          f'({type(error).__name__}; {timeout}): {first_line} Restart every '
          'task of the job with the same commands: training resumes from the '
          'chief\'s newest checkpoint in --train_dir.')
