"""Time to a flag error and to the end of `--help`, per script.

A user who mistypes a flag waits for the error line. For each script this
launches three command lines and times them from launch:

  typo     an enum value with a typo (`--model_name=lenett`;
           `--dataset_name=cifar1000` for download_and_convert_data.py),
           up to the stderr line naming it;
  unknown  an unknown flag (`--no_such_flag=1`), up to the line naming it;
  help     `--help`, up to the end of its output (the process's exit);

and, in the same rounds, `python -c "import tensorflow"` to its exit. Each is
run `--repeats` times (the rounds interleave, so a change of machine load
hits all alike); the table gives the medians and each one's ratio to the
TensorFlow import. The repository measured is `--repo`, so that two commits
are compared in one sitting:

  python bench/startup.py --repo=/path/to/old/checkout
  python bench/startup.py                      # this checkout

Every command line fails before writing anything: the output paths it names
do not exist.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

SCRIPTS = ('train_image_classifier.py', 'eval_image_classifier.py',
           'export_inference_graph.py', 'print_model.py', 'classify_image.py',
           'download_and_convert_data.py', 'compare_methods.py')

# Flags a script needs before it looks at the model name (the old export
# checked its paths first); paths that do not exist, so nothing is written.
_NEEDED = {
    'export_inference_graph.py': ['--checkpoint_path=/nonexistent/ckpt',
                                  '--output_dir=/nonexistent/export'],
    'compare_methods.py': ['--study_dir=/nonexistent/study'],
    'train_image_classifier.py': ['--train_dir=/nonexistent/train'],
    'eval_image_classifier.py': ['--eval_dir=/nonexistent/eval'],
}


def _cases(script):
  """`{case: (argv after the script, text of the line to wait for)}`."""
  needed = _NEEDED.get(script, [])
  cases = {}
  if script == 'download_and_convert_data.py':
    cases['typo'] = (['--dataset_name=cifar1000',
                      '--dataset_dir=/nonexistent/data'], 'cifar1000')
  elif script != 'classify_image.py':  # classify has no enum flag
    cases['typo'] = (needed + ['--model_name=lenett'], 'lenett')
  cases['unknown'] = (needed + ['--no_such_flag=1'], 'no_such_flag')
  cases['help'] = (['--help'], None)
  return cases


def _time(argv, cwd, env, wait_for):
  """Seconds from launch to the stderr line holding `wait_for` (None: exit)."""
  start = time.perf_counter()
  proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  if wait_for is None:
    proc.communicate()
    return time.perf_counter() - start
  seen = None
  for line in proc.stderr:
    if wait_for in line:
      seen = time.perf_counter() - start
      break
  proc.communicate()
  if seen is None:
    raise RuntimeError(f'{" ".join(argv)}: no line with {wait_for!r} on '
                       'stderr')
  return seen


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repo', default=os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), help='The checkout whose scripts run.')
  parser.add_argument('--repeats', type=int, default=5,
                      help='Runs of each command line (the median counts).')
  parser.add_argument('--scripts', nargs='*', default=SCRIPTS)
  args = parser.parse_args()
  repo = os.path.abspath(args.repo)
  env = dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL='2')
  commands = {('python -c "import tensorflow"', ''): (
      [sys.executable, '-c', 'import tensorflow'], None)}
  for script in args.scripts:
    for case, (flags, wait_for) in _cases(script).items():
      commands[(script, case)] = (
          [sys.executable, os.path.join(repo, script)] + flags, wait_for)
  times = {key: [] for key in commands}
  load = os.getloadavg()[0]
  for _ in range(args.repeats):
    for key, (argv, wait_for) in commands.items():
      times[key].append(_time(argv, repo, env, wait_for))
  reference = statistics.median(times[('python -c "import tensorflow"', '')])
  print(f'{repo} ({args.repeats} repeats, medians; load average '
        f'{load:.1f} -> {os.getloadavg()[0]:.1f})')
  print(f'{"script":32} {"case":8} {"seconds":>8} {"/ import tf":>12}')
  for (script, case), values in times.items():
    median = statistics.median(values)
    print(f'{script:32} {case:8} {median:8.2f} {median / reference:12.2f}')


if __name__ == '__main__':
  main()
