"""What ASHA early stopping saves on a digits study, and what it changes.

Runs one study twice with `compare_methods.py --backend=ray` on a local Ray:
once with `--early_stopping=asha` and once without (every run to its last
step). The study is lenet on the bundled digits, momentum at learning rates
from hopeless (1e-5) to good, times seeds. Printed:

* per study: runs finished and stopped early, the steps trained in all (the
  runs' last checkpoints) and the driver's wall time;
* per configuration (learning rate, over its seeds): what the full study
  reached and its rank, and under ASHA the steps trained, the runs stopped
  early and the accuracy reached (a stopped run's last validation);
* whether ASHA kept the full study's best configuration, and whether the
  runs that ASHA let finish rank in the same order as in the full study
  (the same seeds: a run that survives is the same training in both).

ASHA is asynchronous: a run is compared with the runs that reached its rung
before it, so the runs that start first are judged against few others. The
learning rates are therefore given in a mixed order (as a random search
would draw them), not sorted.

The two studies share the machine with whatever else runs on it: the wall
times are as measured then (the load average is printed before and after).

  python bench/asha_savings.py                 # about 20 minutes here
  python bench/asha_savings.py --steps=600 --seeds=0
  # Measure one side again: keep --work_dir, delete that study's folder.
  python bench/asha_savings.py --work_dir=/tmp/asha --reuse
"""

import argparse
import csv
import os
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from bench import common

WALL_FILE = 'bench_wall_secs.txt'


def _configurations(rows):
  """`{learning rate: [rows]}` in the grid's order."""
  found = {}
  for row in rows.values():
    found.setdefault(row['learning_rate'], []).append(row)
  return found


def _reached(runs):
  """Mean accuracy the runs reached (their last validation)."""
  values = [float(r['final_accuracy']) for r in runs if r['final_accuracy']]
  return sum(values) / len(values) if values else float('nan')


def _measured(study_dir, flags, reuse):
  """`(wall seconds, rows)` of the study: run now, or with `reuse` read
  back from an earlier run of this script (its wall time in WALL_FILE)."""
  wall_file = os.path.join(study_dir, WALL_FILE)
  if reuse and os.path.exists(wall_file):
    with open(wall_file) as f:
      wall = float(f.read())
    with open(os.path.join(study_dir, 'results.csv')) as f:
      return wall, {row['run']: row for row in csv.DictReader(f)}
  wall, rows = common.run_study(study_dir, flags)
  with open(wall_file, 'w') as f:
    f.write(f'{wall:.1f}\n')
  return wall, rows


def _ranks(accuracies):
  """`{key: rank}` by accuracy, best first."""
  order = sorted(accuracies, key=lambda k: -accuracies[k])
  return {k: i for i, k in enumerate(order, 1)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--learning_rates',
                      default='0.01,1e-5,0.03,1e-4,0.003,1e-3',
                      help='The grid, in the order the runs start.')
  parser.add_argument('--seeds', default='0,1')
  parser.add_argument('--steps', type=int, default=1000)
  parser.add_argument('--eval_every', type=int, default=100,
                      help='Steps between validations (the rungs\' points).')
  parser.add_argument('--grace_period', type=int, default=100)
  parser.add_argument('--reduction_factor', type=int, default=3)
  parser.add_argument('--parallel', type=int, default=2)
  parser.add_argument('--validation_max_batches', type=int, default=10)
  parser.add_argument('--work_dir', default=None,
                      help='Where the digits and the studies go (default: '
                      'a temporary folder, removed at the end).')
  parser.add_argument('--reuse', action='store_true',
                      help='A study of --work_dir this script measured '
                      'before is read back, not run again.')
  args = parser.parse_args()

  with tempfile.TemporaryDirectory() as temporary:
    work = args.work_dir or temporary
    digits = common.digits_records(os.path.join(work, 'digits'))
    flags = [*common.DIGITS_STUDY_FLAGS, f'--dataset_dir={digits}',
             f'--vary=learning_rate={args.learning_rates}',
             f'--seeds={args.seeds}', f'--max_number_of_steps={args.steps}',
             f'--eval_every_n_steps={args.eval_every}',
             f'--log_every_n_steps={args.eval_every}',
             f'--validation_max_batches={args.validation_max_batches}',
             '--backend=ray', f'--parallel={args.parallel}']
    asha = ['--early_stopping=asha',
            f'--grace_period_steps={args.grace_period}',
            f'--reduction_factor={args.reduction_factor}']
    print(f'# {common.machine()}; load average {common.load_average():.1f}')
    print(f'# lenet on digits, momentum 0.9, batch 16, {args.steps} steps, '
          f'validation every {args.eval_every} steps '
          f'({args.validation_max_batches} batches); learning rates '
          f'{args.learning_rates} x seeds {args.seeds}; local Ray, '
          f'{args.parallel} runs at a time; ASHA: grace period '
          f'{args.grace_period} steps, reduction factor '
          f'{args.reduction_factor}, max_t {args.steps}')
    studies = {}
    for name, extra in (('without', []), ('asha', asha)):
      study_dir = os.path.join(work, f'study_{name}')
      studies[name] = _measured(study_dir, flags + extra, args.reuse)
      print(f'# {name}: {studies[name][0]:.0f} s; load average '
            f'{common.load_average():.1f}', flush=True)

  print()
  print(f'{"study":<22} {"runs":>5} {"finished":>9} {"stopped":>8} '
        f'{"steps":>7} {"wall s":>7}')
  for name, label in (('without', 'without early stopping'),
                      ('asha', '--early_stopping=asha')):
    wall, rows = studies[name]
    states = [r['state'] for r in rows.values()]
    steps = sum(int(r['global_step'] or 0) for r in rows.values())
    print(f'{label:<22} {len(rows):>5} {states.count("finished"):>9} '
          f'{states.count("stopped early"):>8} {steps:>7} {wall:>7.0f}')
  full = _configurations(studies['without'][1])
  early = _configurations(studies['asha'][1])
  full_accuracy = {lr: _reached(runs) for lr, runs in full.items()}
  early_accuracy = {lr: _reached(runs) for lr, runs in early.items()}
  full_rank, early_rank = _ranks(full_accuracy), _ranks(early_accuracy)
  print()
  print(f'{"learning rate":<14} {"full: accuracy":>15} {"rank":>5} '
        f'{"ASHA: steps":>12} {"stopped (at)":>16} {"reached":>8} '
        f'{"rank":>5}')
  for lr in sorted(full, key=lambda k: full_rank[k]):
    runs = early[lr]
    stopped = [r for r in runs if r['state'] == 'stopped early']
    at = ','.join(r['global_step'] for r in stopped)
    print(f'{lr:<14} {full_accuracy[lr]:>15.4f} {full_rank[lr]:>5} '
          f'{sum(int(r["global_step"] or 0) for r in runs):>12} '
          f'{f"{len(stopped)}/{len(runs)} ({at})" if stopped else "0":>16} '
          f'{early_accuracy[lr]:>8.4f} {early_rank[lr]:>5}')
  best = min(full, key=lambda k: full_rank[k])
  kept = [r for r in early[best] if r['state'] == 'finished']
  print()
  print(f'The full study\'s best configuration (learning rate {best}): '
        f'{len(kept)} of its {len(early[best])} runs finished under ASHA; '
        f'its rank by what its runs reached: {early_rank[best]}. The '
        f'configurations\' ranks by what they reached are '
        f'{"the same as" if early_rank == full_rank else "not the same as"} '
        'the full study\'s.')
  full_rows, early_rows = studies['without'][1], studies['asha'][1]
  survivors = [n for n, r in early_rows.items() if r['state'] == 'finished']
  accuracy = lambda rows, n: float(rows[n]['final_accuracy'])
  by_full = sorted(survivors, key=lambda n: -accuracy(full_rows, n))
  by_early = sorted(survivors, key=lambda n: -accuracy(early_rows, n))
  same = all(accuracy(full_rows, n) == accuracy(early_rows, n)
             for n in survivors)
  print(f'Runs that finished under ASHA ({len(survivors)}), by final '
        'accuracy: ' + ', '.join(f'{n} {accuracy(early_rows, n):.4f}'
                                 for n in by_early) + '.')
  print(f'Their order in the full study is '
        f'{"the same" if by_full == by_early else "different"}'
        f'{" (and their accuracies equal)" if same else ""}.')


if __name__ == '__main__':
  main()
