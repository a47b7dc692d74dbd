"""Where training runs: TF-Slim's `DeploymentConfig` over `tf.distribute`.

TF-Slim built one tower ("clone") per device and averaged their gradients by
hand. Here a clone is a replica of a `tf.distribute` strategy and the tower
averaging is the strategy's all-reduce:

  config = model_deploy.DeploymentConfig(num_clones=2, clone_on_cpu=True)
  model_deploy.configure_logical_devices(config)   # before TF starts devices
  strategy = config.strategy()
  with strategy.scope():
    net = ...; optimizer = ...

* one clone: `OneDeviceStrategy` on the GPU, or the CPU;
* `num_clones` clones: `MirroredStrategy` over `num_clones` GPUs, or over
  `num_clones` logical CPU devices with `clone_on_cpu`.

* several workers (`cluster` in 'multi_worker' mode, see `cluster.py`):
  `MultiWorkerMirroredStrategy`, collective all-reduce across the workers,
  `num_clones` GPUs on each; collectives give up after
  `collective_timeout_secs` instead of waiting forever for a lost peer;
* parameter servers (`cluster` in 'parameter_server' mode): the coordinator
  builds `ParameterServerStrategy`; ps and worker tasks only serve.

Batch size is per clone, as in TF-Slim: a step reads `batch_size * num_clones
* num_replicas` images.
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from slimkit.deployment import cluster as cluster_lib


class DeploymentError(ValueError):
  """A deployment that this machine or this version cannot run."""


@dataclasses.dataclass(frozen=True)
class DeploymentConfig:
  """How many clones on which devices; validated on creation.

  Attributes:
    num_clones: Model clones (replicas) on this worker.
    clone_on_cpu: Put every clone on the CPU (split into `num_clones` logical
      devices), e.g. to test multi-clone training without GPUs.
    replica_id: This worker's index (`--task`).
    num_replicas: Number of workers (`--worker_replicas`).
    num_ps_tasks: Number of parameter servers (`--num_ps_tasks`).
    worker_job_name: Cluster job name of the workers.
    ps_job_name: Cluster job name of the parameter servers.
    cluster: The `cluster.Cluster` of this process (`cluster.resolve()`);
      None trains on this machine only.
    collective_timeout_secs: Seconds a multi-worker collective (all-reduce)
      waits for its peers before failing; None waits forever.
  """
  num_clones: int = 1
  clone_on_cpu: bool = False
  replica_id: int = 0
  num_replicas: int = 1
  num_ps_tasks: int = 0
  worker_job_name: str = 'worker'
  ps_job_name: str = 'ps'
  cluster: Optional[cluster_lib.Cluster] = None
  collective_timeout_secs: Optional[float] = 300.0

  def __post_init__(self):
    for name in ('num_clones', 'num_replicas'):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise DeploymentError(f'{name} must be an integer >= 1, got {value!r}')
    if not 0 <= self.replica_id < self.num_replicas:
      raise DeploymentError(
          'replica_id (--task) must be in '
          f'[0, num_replicas={self.num_replicas}), got {self.replica_id!r}')
    if self.num_ps_tasks < 0:
      raise DeploymentError(
          f'num_ps_tasks must be >= 0, got {self.num_ps_tasks!r}')
    self._check_cluster()

  def _check_cluster(self):
    """The multi-worker and parameter-server fields agree with `cluster`."""
    mode = self.cluster.mode if self.cluster else cluster_lib.LOCAL
    if mode == cluster_lib.LOCAL:
      if self.num_replicas > 1 or self.num_ps_tasks > 0:
        raise DeploymentError(
            f'num_replicas={self.num_replicas} (--worker_replicas), '
            f'num_ps_tasks={self.num_ps_tasks} need a cluster: pass '
            '--worker_hosts (and --ps_hosts), or set TF_CONFIG.')
      return
    if self.collective_timeout_secs is not None and (
        self.collective_timeout_secs <= 0):
      raise DeploymentError('collective_timeout_secs must be > 0 or None, got '
                            f'{self.collective_timeout_secs!r}')
    if (self.num_replicas, self.num_ps_tasks) != (self.cluster.num_workers,
                                                  self.cluster.num_ps):
      raise DeploymentError(
          f'num_replicas={self.num_replicas}, num_ps_tasks='
          f'{self.num_ps_tasks} disagree with the cluster: '
          f'{self.cluster.describe()}.')
    if self.num_clones > 1 and self.clone_on_cpu:
      # MultiWorkerMirroredStrategy puts one replica on each worker's CPU; it
      # cannot split it into logical devices.
      raise DeploymentError(
          f'--num_clones={self.num_clones} --clone_on_cpu: with several '
          'workers each worker runs one clone on its CPU; use --num_clones=1, '
          'or GPUs.')
    if mode == cluster_lib.PARAMETER_SERVER and self.num_clones > 1:
      raise DeploymentError(
          f'--num_clones={self.num_clones} with parameter servers: each '
          'worker runs one clone; add workers instead.')

  @property
  def clone_devices(self):
    """The device of each clone, e.g. `['/gpu:0', '/gpu:1']`."""
    kind = 'cpu' if self.clone_on_cpu or not _gpus() else 'gpu'
    return [f'/{kind}:{i}' for i in range(self.num_clones)]

  def check_devices(self):
    """Checks that this machine has a device for every clone.

    Call it after `configure_logical_devices`.

    Raises:
      DeploymentError: naming the clones asked for and the devices found.
    """
    if self.num_clones == 1:
      return
    if self.clone_on_cpu:
      available = len(tf.config.list_logical_devices('CPU'))
      kind = 'logical CPU devices'
    else:
      available = len(tf.config.list_logical_devices('GPU'))
      kind = 'GPUs'
    if self.num_clones > available:
      hint = ('' if self.clone_on_cpu else
              ' Pass --clone_on_cpu to run the clones on the CPU.')
      raise DeploymentError(
          f'--num_clones={self.num_clones} needs {self.num_clones} {kind}, '
          f'found {available}.{hint}')

  def strategy(self):
    """Returns the `tf.distribute.Strategy` of this deployment.

    Raises:
      DeploymentError: for too few devices, or for a ps or worker task of a
        parameter-server cluster, which serves (`cluster.serve()`) instead.
    """
    mode = self.cluster.mode if self.cluster else cluster_lib.LOCAL
    if mode == cluster_lib.MULTI_WORKER:
      self.check_devices()
      # AUTO: NCCL between GPUs, ring all-reduce over gRPC between CPUs.
      options = tf.distribute.experimental.CommunicationOptions(
          implementation=tf.distribute.experimental.CommunicationImplementation
          .AUTO, timeout_seconds=self.collective_timeout_secs)
      return tf.distribute.MultiWorkerMirroredStrategy(
          cluster_resolver=self.cluster.cluster_resolver(),
          communication_options=options)
    if mode == cluster_lib.PARAMETER_SERVER:
      if self.cluster.serves_only:
        raise DeploymentError(
            f'{self.cluster.describe()} only serves; the coordinator '
            '(--job_name=chief) builds the strategy.')
      return tf.distribute.experimental.ParameterServerStrategy(
          self.cluster.cluster_resolver())
    self.check_devices()
    devices = self.clone_devices
    if self.num_clones == 1:
      return tf.distribute.OneDeviceStrategy(devices[0])
    cross_device_ops = None
    if self.clone_on_cpu:
      # NCCL is GPU-only; reduce on the first CPU device instead.
      cross_device_ops = tf.distribute.ReductionToOneDevice(devices[0])
    return tf.distribute.MirroredStrategy(devices=devices,
                                          cross_device_ops=cross_device_ops)


def _gpus():
  return tf.config.list_physical_devices('GPU')


def configure_logical_devices(config):
  """Splits the CPU into `num_clones` logical devices when clones are on CPU.

  Must run before TensorFlow initialises its devices (before the first op).
  Harmless when the split is already in place or not needed.

  Args:
    config: A `DeploymentConfig`.

  Raises:
    DeploymentError: when TensorFlow already started with fewer CPU devices.
  """
  if config.cluster is not None and config.cluster.mode != cluster_lib.LOCAL:
    # MultiWorkerMirroredStrategy uses every visible GPU: show it num_clones.
    gpus = _gpus()
    if gpus and len(gpus) > config.num_clones:
      tf.config.set_visible_devices(gpus[:config.num_clones], 'GPU')
    return
  if not config.clone_on_cpu or config.num_clones == 1:
    return
  cpu = tf.config.list_physical_devices('CPU')[0]
  current = tf.config.get_logical_device_configuration(cpu) or []
  if len(current) >= config.num_clones:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * config.num_clones)
  except RuntimeError as e:
    raise DeploymentError(
        f'Cannot split the CPU into {config.num_clones} devices: TensorFlow '
        f'has already started ({e}). Configure devices first.') from None


def make_strategy(config):
  """Configures devices for `config` and returns its strategy."""
  configure_logical_devices(config)
  return config.strategy()


def chief_value(strategy, value):
  """The chief's int `value`, on every worker of `strategy`.

  For what each process picks on its own but all must share, such as a
  random seed drawn when none is given. One all-reduce with several
  workers; `value` itself otherwise.

  Args:
    strategy: The run's `tf.distribute.Strategy`.
    value: An int below 2**53 (it travels as float64).

  Returns:
    An int.
  """
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return value

  def replica_fn():
    ctx = tf.distribute.get_replica_context()
    mine = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), tf.float64)
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                          mine * tf.constant(float(value), tf.float64))

  @tf.function(autograph=False)
  def agree():
    return strategy.experimental_local_results(strategy.run(replica_fn))[0]

  return int(agree().numpy())
