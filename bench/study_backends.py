"""Wall time of one digits study on the local backend and on a 2-node Ray.

The study is the 4-run one of tests/test_study_ray.py (lenet on the bundled
digits, learning rates 0.01 and 0.03 x seeds 0 and 1, 30 steps). It runs
first with `compare_methods.py --parallel=2` (the local backend: 2 runs at
a time on this machine), then with `--backend=ray` on a simulated cluster
(`ray.cluster_utils.Cluster`: a head and a second node of 1 CPU each, so 2
runs at a time too), one after the other in one sitting. The cluster is
started before its study and is not counted; the Ray driver's start, its
storage check and Tune are. The results.csv of the two studies are checked
to agree (state, steps, accuracies).

Both nodes are processes of this machine: the numbers are the overhead of
the Ray backend, not a speed-up (on a real cluster each node brings its own
CPUs or GPUs). Other work on the machine shows in the wall times: the load
average is printed with them.

  python bench/study_backends.py               # about 5 minutes here
  python bench/study_backends.py --repeats=2
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from bench import common

_COMPARED = ('state', 'global_step', 'final_accuracy', 'best_accuracy',
             'best_step')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--repeats', type=int, default=1,
                      help='Times each backend runs the study (alternating).')
  parser.add_argument('--work_dir', default=None,
                      help='Where the digits and the studies go (default: '
                      'a temporary folder, removed at the end).')
  args = parser.parse_args()
  from ray import cluster_utils

  with tempfile.TemporaryDirectory() as temporary:
    work = args.work_dir or temporary
    digits = common.digits_records(os.path.join(work, 'digits'))
    flags = [*common.DIGITS_STUDY_FLAGS, f'--dataset_dir={digits}',
             '--vary=learning_rate=0.01,0.03', '--seeds=0,1',
             f'--max_number_of_steps={args.steps}', '--log_every_n_steps=10',
             '--eval_every_n_steps=10', '--validation_max_batches=3']
    print(f'# {common.machine()}')
    print(f'# lenet on digits: learning rate 0.01, 0.03 x seeds 0, 1 (4 '
          f'runs), {args.steps} steps, batch 16, validation every 10 steps')
    node = dict(num_cpus=1, object_store_memory=80 * 1024 * 1024)
    cluster = cluster_utils.Cluster(
        initialize_head=True, head_node_args=dict(node,
                                                  include_dashboard=False))
    try:
      cluster.add_node(**node)
      cluster.wait_for_nodes()
      measured = []
      for repeat in range(args.repeats):
        for name, extra in (
            ('local', ['--parallel=2']),
            ('ray', ['--backend=ray', f'--ray_address={cluster.address}'])):
          load = common.load_average()
          wall, rows = common.run_study(
              os.path.join(work, f'{name}_{repeat}'), flags + extra)
          measured.append((name, wall, load, common.load_average(), rows))
          print(f'# {name} #{repeat + 1}: {wall:.0f} s', flush=True)
    finally:
      cluster.shutdown()

  reference = measured[0][4]
  print()
  print(f'{"backend":<34} {"wall s":>7} {"load before":>12} '
        f'{"load after":>11} {"same results":>13}')
  labels = {'local': 'local, --parallel=2',
            'ray': 'Ray, 2 simulated nodes of 1 CPU'}
  for name, wall, before, after, rows in measured:
    same = sorted(rows) == sorted(reference) and all(
        {k: row[k] for k in _COMPARED} ==
        {k: reference[run][k] for k in _COMPARED}
        for run, row in rows.items())
    print(f'{labels[name]:<34} {wall:>7.0f} {before:>12.1f} {after:>11.1f} '
          f'{"yes" if same else "NO":>13}')


if __name__ == '__main__':
  main()
