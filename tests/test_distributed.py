"""Several workers and parameter servers, as processes on 127.0.0.1.

Every process is started and ended here, listens on a free port of
127.0.0.1 only, and is waited for with a timeout.
"""

import glob
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from slimkit.deployment import cluster as cluster_lib
from slimkit.deployment import model_deploy
from tests import event_files
from tests import local_cluster
from tests import script_runner
from tests import seeding
from tests import tiny_records

ROOT = local_cluster.ROOT
SCRIPT = local_cluster.SCRIPT
TIMEOUT = local_cluster.TIMEOUT


@pytest.fixture(scope='module')
def cifar_dir(tmp_path_factory):
  return tiny_records.write_dataset(tmp_path_factory.mktemp('cifar10'),
                                    'cifar10', {'train': 64})


# --- The cluster from flags or TF_CONFIG (no processes). ---


def test_worker_hosts_fill_in_tf_config():
  cluster = cluster_lib.resolve(worker_hosts='10.0.0.1:2222,10.0.0.2:2222',
                                task=1, worker_replicas=2, environ={})
  assert cluster.mode == cluster_lib.MULTI_WORKER
  assert (cluster.num_workers, cluster.worker_index, cluster.is_chief) == (
      2, 1, False)
  assert cluster.tf_config() == {
      'cluster': {'worker': ['10.0.0.1:2222', '10.0.0.2:2222']},
      'task': {'type': 'worker', 'index': 1}}
  # The same cluster from TF_CONFIG, as tf.distribute users write it.
  assert cluster_lib.resolve(environ={
      'TF_CONFIG': json.dumps(cluster.tf_config())}) == cluster


def test_parameter_server_roles():
  hosts = dict(worker_hosts='a:1,b:1', ps_hosts='c:1', environ={})
  coordinator = cluster_lib.resolve(**hosts)
  assert (coordinator.mode, coordinator.task_type, coordinator.is_chief,
          coordinator.serves_only) == (cluster_lib.PARAMETER_SERVER, 'chief',
                                       True, False)
  ps = cluster_lib.resolve(job_name='ps', num_ps_tasks=1, **hosts)
  worker = cluster_lib.resolve(job_name='worker', task=1, **hosts)
  assert ps.serves_only and worker.serves_only
  assert not ps.is_chief and not worker.is_chief
  # A chief job in TF_CONFIG is the chief of multi-worker training too.
  tf_config = {'cluster': {'chief': ['a:1'], 'worker': ['b:1']},
               'task': {'type': 'worker', 'index': 0}}
  worker = cluster_lib.resolve(environ={'TF_CONFIG': json.dumps(tf_config)})
  assert (worker.num_workers, worker.worker_index, worker.is_chief) == (
      2, 1, False)
  assert not cluster_lib.resolve(environ={}).jobs


@pytest.mark.parametrize('kwargs, message', [
    (dict(worker_replicas=2), r'--worker_replicas=2 .*need the cluster'),
    (dict(num_ps_tasks=1), 'need the cluster'),
    (dict(worker_hosts='a:1,b:1', worker_replicas=3),
     '--worker_replicas=3 but the cluster has 2'),
    (dict(worker_hosts='a:1,b:1', task=2), '--task=2 is out of range'),
    (dict(worker_hosts='a:1,a:1'), 'lists an address twice'),
    (dict(worker_hosts='a'), "'a' of job 'worker' is not host:port"),
    (dict(worker_hosts='a:1,,b:1'), 'empty entry'),
    (dict(ps_hosts='c:1'), '--ps_hosts needs --worker_hosts'),
    (dict(worker_hosts='a:1', ps_hosts='c:1', num_ps_tasks=2),
     '--num_ps_tasks=2 but the cluster has 1'),
    (dict(worker_hosts='a:1', job_name='ps'), '--job_name=ps is not a job'),
    (dict(worker_hosts='a:1', ps_hosts='c:1', job_name='chief', task=1),
     'takes --task=0'),
    (dict(worker_hosts='a:1', environ={'TF_CONFIG': '{}'}),
     'Both --worker_hosts/--ps_hosts and the TF_CONFIG'),
    (dict(environ={'TF_CONFIG': 'not json'}), 'TF_CONFIG is not valid JSON'),
])
def test_inconsistent_clusters_are_refused(kwargs, message):
  kwargs.setdefault('environ', {})
  with pytest.raises(cluster_lib.ClusterError, match=message):
    cluster_lib.resolve(**kwargs)


def test_deployment_config_checks_the_cluster():
  cluster = cluster_lib.resolve(worker_hosts='a:1,b:1', environ={})
  config = model_deploy.DeploymentConfig(num_replicas=2, cluster=cluster)
  assert config.cluster.num_workers == 2
  with pytest.raises(model_deploy.DeploymentError, match='disagree'):
    model_deploy.DeploymentConfig(num_replicas=3, cluster=cluster)
  with pytest.raises(model_deploy.DeploymentError,
                     match='each worker runs one clone on its CPU'):
    model_deploy.DeploymentConfig(num_replicas=2, cluster=cluster,
                                  num_clones=2, clone_on_cpu=True)
  ps = cluster_lib.resolve(worker_hosts='a:1', ps_hosts='c:1', job_name='ps',
                           environ={})
  with pytest.raises(model_deploy.DeploymentError, match='only serves'):
    model_deploy.DeploymentConfig(num_ps_tasks=1, cluster=ps).strategy()


@pytest.mark.parametrize('flags, message', [
    (['--worker_replicas=2'], 'need the cluster'),
    (['--worker_hosts=127.0.0.1:1,127.0.0.1:2', '--ps_hosts=127.0.0.1:3',
      '--sync_replicas'], 'ParameterServerStrategy trains asynchronously'),
])
def test_script_refuses_bad_cluster_flags_before_writing(tmp_path, cifar_dir,
                                                         flags, message):
  train_dir = tmp_path / 'train'
  result = script_runner.run(
      [sys.executable, SCRIPT, f'--train_dir={train_dir}',
       f'--dataset_dir={cifar_dir}', '--dataset_name=cifar10',
       '--model_name=cifarnet', *flags], env=local_cluster.env(), cwd=ROOT,
      capture_output=True, text=True, timeout=TIMEOUT, check=False)
  assert result.returncode == 2, result.stderr[-2000:]
  assert re.search(message, result.stderr), result.stderr[-2000:]
  assert not train_dir.exists()


# --- Synchronous training on two worker processes. ---

# A worker (TF_CONFIG set) or the one-process reference (no TF_CONFIG). It
# trains 2 steps, saving a checkpoint after each, then restarts and resumes
# from the chief's checkpoint to step 3; it keeps its weights after each run.
_WORKER = textwrap.dedent(r'''
  import sys
  import numpy as np
  import tensorflow as tf
  from slimkit.datasets import dataset_factory, input_pipeline
  from slimkit.deployment import cluster as cluster_lib
  from slimkit.deployment import model_deploy
  from slimkit.training import optimization, trainer
  from slimkit.nets import nets_factory
  from slimkit.preprocessing import preprocessing_factory

  dataset_dir, train_dir, out, batch = sys.argv[1:5]
  batch = int(batch)
  cluster = cluster_lib.resolve()
  strategy = model_deploy.make_strategy(model_deploy.DeploymentConfig(
      num_replicas=cluster.num_workers, replica_id=cluster.worker_index,
      cluster=cluster, collective_timeout_secs=120))
  split = dataset_factory.get_split('cifar10', 'train', dataset_dir)
  preprocess = preprocessing_factory.get_preprocessing('cifarnet', False)
  nets = []

  def network_fn():
    tf.keras.utils.set_random_seed(1)
    # No dropout: every process computes the same function.
    nets.append(nets_factory.get_network_fn('cifarnet', 10, is_training=True,
                                            dropout_keep_prob=1.0))
    return nets[-1]

  def dataset_fn(ctx):
    # In order, without augmentation: worker k reads records k, k + 2, ...,
    # so a step's two worker batches are the reference's batch of twice the
    # size.
    return input_pipeline.make_dataset(
        split, preprocess, batch_size=batch, is_training=False, image_size=32,
        input_context=ctx)

  weights = {}
  for steps in (2, 3):
    result = trainer.train(
        strategy=strategy, network_fn=network_fn, dataset_fn=dataset_fn,
        optimizer_fn=lambda lr: optimization.build_optimizer('sgd', lr),
        learning_rate=0.1,
        options=trainer.TrainOptions(train_dir=train_dir, batch_size=batch,
                                     max_number_of_steps=steps,
                                     save_interval_secs=0,
                                     log_every_n_steps=1,
                                     save_summaries_secs=10 ** 6,
                                     eval_every_n_steps=2),
        # Validation during training on every worker (the chief writes).
        validation_dataset_fn=lambda: input_pipeline.make_dataset(
            split, preprocess, batch_size=batch, is_training=False,
            image_size=32))
    assert result.global_step == steps, result
    for v in nets[-1].weights:
      weights[f'{steps}:{v.path}'] = v.numpy()
  tf.keras.utils.set_random_seed(1)
  init = nets_factory.get_network_fn('cifarnet', 10, dropout_keep_prob=1.0)
  init(tf.zeros([1, 32, 32, 3]))
  for v in init.weights:
    weights[f'0:{v.path}'] = v.numpy()
  np.savez(out, **weights)
''')


@pytest.mark.slow  # ~70 s: three processes
def test_two_workers_train_in_sync_as_one_process_of_twice_the_batch(
    tmp_path, cifar_dir):
  batch = 4
  ports = local_cluster.free_ports(2)
  workers = [f'127.0.0.1:{p}' for p in ports]
  with local_cluster.Processes(tmp_path) as procs:
    for task in (0, 1):
      tf_config = json.dumps({'cluster': {'worker': workers},
                              'task': {'type': 'worker', 'index': task}})
      procs.start(f'worker{task}', [
          sys.executable, '-c', _WORKER, cifar_dir,
          str(tmp_path / f'train{task}'), str(tmp_path / f'worker{task}.npz'),
          str(batch)],
        local_cluster.env(TF_CONFIG=tf_config, TMPDIR=str(tmp_path)))
    procs.start('single', [
        sys.executable, '-c', _WORKER, cifar_dir, str(tmp_path / 'single'),
        str(tmp_path / 'single.npz'), str(2 * batch)], local_cluster.env())
    for name in ('worker0', 'worker1', 'single'):
      assert procs.wait(name) == 0, procs.log(name)[-3000:]
  chief, other, single = (dict(np.load(tmp_path / f'{n}.npz'))
                          for n in ('worker0', 'worker1', 'single'))
  assert len(single) == 3 * 10  # Steps 0, 2 and 3 of CifarNet's 10 variables.
  for name in single:
    # Both workers hold the same weights after each run...
    np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
  for step in (1, 2, 3):
    # ...and the chief's checkpoint of every step is the one process's, up to
    # float summation order.
    two = _checkpoint(tmp_path / 'train0' / f'model.ckpt-{step}')
    one = _checkpoint(tmp_path / 'single' / f'model.ckpt-{step}')
    moved = max(np.abs(one[n] - single['0:' + n]).max() for n in one)
    diff = max(np.abs(one[n] - two[n]).max() for n in one)
    assert moved > 1e-3, step
    assert diff <= 1e-4 * moved, (step, diff, moved)
  np.testing.assert_array_equal(
      chief['3:CifarNet/logits/weights'],
      _checkpoint(tmp_path / 'train0' / 'model.ckpt-3')[
          'CifarNet/logits/weights'])
  # Only the chief writes checkpoints; the other worker leaves no file.
  assert sorted(os.path.basename(p) for p in glob.glob(
      str(tmp_path / 'train0' / 'model.ckpt-*.index'))) == [
          'model.ckpt-1.index', 'model.ckpt-2.index', 'model.ckpt-3.index']
  assert not (tmp_path / 'train1').exists()
  # The chief validated at steps 2 (even) and 3 (the last of its second run).
  assert sorted(_validated(tmp_path / 'train0')) == [2, 3]
  # Its temporary checkpoints are removed when it finishes.
  assert not glob.glob(str(tmp_path / 'slimkit-worker-*'))


def _validated(train_dir, tag='eval/Accuracy'):
  """{step: value} of `tag` in train_dir/validation."""
  return event_files.scalars(os.path.join(str(train_dir), 'validation'), tag)


def _checkpoint(prefix):
  import tensorflow as tf
  from slimkit import checkpoints
  reader = tf.train.load_checkpoint(str(prefix))
  return {name: reader.get_tensor(key)
          for name, key in checkpoints.named_values(str(prefix)).items()}


def _logged_losses(log):
  return [float(x) for x in re.findall(r'global step \d+: loss = ([\d.]+)',
                                       log)]


def test_parameter_servers_train_asynchronously_and_the_loss_falls(
    tmp_path, cifar_dir):
  worker_ports = local_cluster.free_ports(2)
  ps_ports = local_cluster.free_ports(1)
  hosts = [f'--worker_hosts=127.0.0.1:{worker_ports[0]},'
           f'127.0.0.1:{worker_ports[1]}',
           f'--ps_hosts=127.0.0.1:{ps_ports[0]}']
  with local_cluster.Processes(tmp_path) as procs:
    # Servers need no dataset flags: the coordinator sends them the work.
    procs.start('ps0', [sys.executable, SCRIPT, '--job_name=ps', '--task=0',
                        *hosts], local_cluster.env())
    for task in (0, 1):
      procs.start(f'worker{task}', [sys.executable, SCRIPT,
                                    '--job_name=worker', f'--task={task}',
                                    *hosts], local_cluster.env())
    procs.start('chief', local_cluster.script_args(
        tmp_path / 'train', cifar_dir, '--job_name=chief', *hosts,
        '--num_ps_tasks=1', '--worker_replicas=2', '--learning_rate=0.02',
        '--max_number_of_steps=40', '--log_every_n_steps=2',
        f'--random_seed={seeding.SEED}', '--eval_every_n_steps=15',
        # The loss of all 64 training records, not of one batch: it falls
        # steadily where a single batch's moves by as much as it falls.
        '--validation_split_name=train'), local_cluster.env())
    assert procs.wait('chief') == 0, procs.log('chief')[-3000:]
    for name in ('ps0', 'worker0', 'worker1'):
      assert procs.procs[name][0].poll() is None, procs.log(name)[-2000:]
  log = procs.log('chief')
  assert len(_logged_losses(log)) == 20, log[-3000:]
  assert os.path.exists(tmp_path / 'train' / 'model.ckpt-40.index')
  # The coordinator validates once a multiple has passed, and at the end.
  validation = _validated(tmp_path / 'train', 'eval/loss')
  assert sorted(validation) == [16, 30, 40]
  assert validation[40] < validation[16], validation


def test_a_lost_worker_stops_the_other_with_an_error_naming_it(
    tmp_path, cifar_dir):
  ports = local_cluster.free_ports(2)
  hosts = f'--worker_hosts=127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}'
  with local_cluster.Processes(tmp_path) as procs:
    for task in (0, 1):
      procs.start(f'worker{task}', local_cluster.script_args(
          tmp_path / f'train{task}', cifar_dir, hosts, f'--task={task}',
          '--max_number_of_steps=100000', '--log_every_n_steps=1',
          '--collective_timeout_secs=20'),
        local_cluster.env(TMPDIR=str(tmp_path)))
    # Wait (bounded) until both train, then kill worker 1.
    worker1 = procs.procs['worker1'][0]
    waited = 0.0
    while 'global step 3:' not in procs.log('worker1'):
      if waited > TIMEOUT or worker1.poll() is not None:
        pytest.fail('worker 1 did not train:\n' + procs.log('worker1')[-3000:])
      try:
        worker1.wait(timeout=0.5)
      except subprocess.TimeoutExpired:
        waited += 0.5
    worker1.kill()
    assert procs.wait('worker0', timeout=120) == 1, procs.log('worker0')[-3000:]
  log = procs.log('worker0')
  assert f'worker 0 lost contact with worker 1 (127.0.0.1:{ports[1]})' in log \
      or 'worker 0 lost contact with a peer' in log, log[-3000:]
  assert 'collectives wait at most 20 s' in log
  assert 'resumes from the chief\'s newest checkpoint' in log
