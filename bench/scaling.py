"""Scaling overhead: 1 and 2 clones, 1 and 2 workers, and the all-reduce share.

Each measurement runs `train_image_classifier.py` on the synthetic dataset (a
repeated batch, so input never limits the step) in fresh processes:

  1 clone     one device (OneDeviceStrategy)
  2 clones    --num_clones=2 --clone_on_cpu: MirroredStrategy over 2 logical
              CPU devices of one process
  1 worker    --worker_hosts=<one address>: MultiWorkerMirroredStrategy with
              one worker (its fixed cost without a peer)
  2 workers   two processes on 127.0.0.1, collective all-reduce over gRPC

Printed per setup: sec/step, steps/s and images/s (global batch; warm-up steps
excluded). Then the all-reduce share: the time of one all-reduce of a tensor
the size of the model's gradients (timed alone, in the same strategy and
processes) divided by the step time.

On a 2-core machine the 2-clone and 2-worker setups share the same two cores
that one clone already uses, so there is no speed-up to see: the numbers show
the overhead of each kind of replication. On N GPUs (or N machines) each
replica has its own device and the step time stays close to one replica's
plus the all-reduce.

  python bench/scaling.py                       # about 4 minutes here
  python bench/scaling.py --model_name=lenet --steps=100
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from bench import common


def _free_ports(count):
  socks = [socket.socket() for _ in range(count)]
  try:
    for s in socks:
      s.bind(('127.0.0.1', 0))
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def allreduce_child(args):
  """Times all-reduces of a gradient-sized tensor; prints RESULT lines."""
  import tensorflow as tf
  from slimkit.deployment import cluster as cluster_lib
  from slimkit.deployment import model_deploy
  from slimkit.nets import nets_factory
  cluster = cluster_lib.resolve(worker_hosts=args.worker_hosts,
                                task=args.task, environ={})
  config = model_deploy.DeploymentConfig(
      num_clones=args.num_clones, clone_on_cpu=args.num_clones > 1,
      num_replicas=cluster.num_workers, replica_id=cluster.worker_index,
      cluster=cluster if cluster.jobs else None)
  strategy = model_deploy.make_strategy(config)
  net = nets_factory.get_network_fn(args.model_name, args.num_classes)
  net(tf.zeros([1, args.image_size, args.image_size, 3]))
  shapes = [v.shape for v in net.trainable_variables]

  @tf.function
  def reduce_once():
    def replica_fn():
      grads = [tf.ones(s) for s in shapes]
      return tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, grads)
    return strategy.run(replica_fn)

  for _ in range(5):
    reduce_once()
  start = time.perf_counter()
  for _ in range(args.repeats):
    out = reduce_once()
  float(tf.reduce_sum(strategy.experimental_local_results(out[0])[0]))
  print(f'RESULT allreduce_sec '
        f'{(time.perf_counter() - start) / args.repeats:.6f}', flush=True)


def _train_argv(args, train_dir, *extra):
  script = os.path.join(common.ROOT, 'train_image_classifier.py')
  return [sys.executable, script,
          f'--train_dir={train_dir}', '--dataset_name=synthetic',
          f'--num_classes={args.num_classes}',
          f'--model_name={args.model_name}',
          f'--train_image_size={args.image_size}',
          f'--batch_size={args.batch_size}', '--optimizer=sgd',
          f'--max_number_of_steps={args.steps}', '--log_every_n_steps=10',
          '--save_summaries_secs=100000', '--save_interval_secs=100000',
          *extra]


def _measure(args, name, extra_sets, child):
  """Runs the processes of one setup; returns (result of task 0, others)."""
  with tempfile.TemporaryDirectory() as tmp:
    others = []
    for i, extra in enumerate(extra_sets[1:], start=1):
      argv = (_train_argv(args, os.path.join(tmp, f't{i}'), *extra)
              if not child else [sys.executable, __file__, *extra])
      others.append(subprocess.Popen(
          argv, cwd=common.ROOT, stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL,
          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
                   PYTHONPATH=common.ROOT)))
    argv = (_train_argv(args, os.path.join(tmp, 't0'), *extra_sets[0])
            if not child else [sys.executable, __file__, *extra_sets[0]])
    try:
      result = common.run(name, argv, batch_size=1, warmup=args.warmup)
    finally:
      for p in others:
        try:
          p.wait(timeout=120)
        except subprocess.TimeoutExpired:
          p.kill()
          p.wait()
  common.check(result)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model_name', default='cifarnet')
  parser.add_argument('--image_size', type=int, default=32)
  parser.add_argument('--num_classes', type=int, default=10)
  parser.add_argument('--batch_size', type=int, default=32,
                      help='Per clone.')
  parser.add_argument('--steps', type=int, default=80)
  parser.add_argument('--warmup', type=int, default=20)
  parser.add_argument('--repeats', type=int, default=50)
  # Child mode (all-reduce timing).
  parser.add_argument('--child', action='store_true')
  parser.add_argument('--worker_hosts', default='')
  parser.add_argument('--task', type=int, default=0)
  parser.add_argument('--num_clones', type=int, default=1)
  args = parser.parse_args()
  if args.child:
    allreduce_child(args)
    return

  common_child = ['--child', f'--model_name={args.model_name}',
                  f'--image_size={args.image_size}',
                  f'--num_classes={args.num_classes}',
                  f'--repeats={args.repeats}']
  print(f'# {common.machine()}; load average {common.load_average():.1f}')
  print(f'# {args.model_name} {args.image_size}x{args.image_size}, batch '
        f'{args.batch_size} per clone, {args.steps} steps, first '
        f'{args.warmup} excluded')
  print(f'{"setup":<10} {"replicas":>8} {"sec/step":>9} {"steps/s":>8} '
        f'{"images/s":>9} {"all-reduce":>11} {"share":>6}')
  def hosts(count):
    return '--worker_hosts=' + ','.join(
        f'127.0.0.1:{p}' for p in _free_ports(count))

  # name -> (replicas, train flags of each process, child flags of each).
  setups = {
      '1 clone': (1, lambda: [[]], None),
      '2 clones': (2, lambda: [['--num_clones=2', '--clone_on_cpu']],
                   lambda: [common_child + ['--num_clones=2']]),
      '1 worker': (1, lambda: [[hosts(1), '--task=0']],
                   lambda: [common_child + [hosts(1), '--task=0']]),
      '2 workers': (2, lambda h=None: [[h, f'--task={t}'] for t in (0, 1)],
                    lambda h=None: [common_child + [h, f'--task={t}']
                                    for t in (0, 1)]),
  }
  for name, (replicas, train_sets, child_sets) in setups.items():
    if name == '2 workers':
      train_flags, child_flags = train_sets(hosts(2)), child_sets(hosts(2))
    else:
      train_flags = train_sets()
      child_flags = child_sets() if child_sets else None
    train = _measure(args, name, train_flags, child=False)
    # Measured with batch_size=1, images_per_sec is steps per second.
    steps_per_sec = train.images_per_sec
    sec_per_step = 1.0 / steps_per_sec
    reduce_sec = 0.0  # One clone without a cluster: nothing to all-reduce.
    if child_flags:
      reduce_sec = _measure(args, name, child_flags,
                            child=True).values['allreduce_sec']
    print(f'{name:<10} {replicas:>8} {sec_per_step:>9.4f} '
          f'{steps_per_sec:>8.2f} '
          f'{steps_per_sec * args.batch_size * replicas:>9.1f} '
          f'{reduce_sec * 1000:>9.2f}ms {reduce_sec / sec_per_step:>6.1%}',
          flush=True)


if __name__ == '__main__':
  main()
