"""The flags: defined once, parsed and checked before TensorFlow is imported.

The scripts' command lines run in subprocesses: whether `tensorflow` is in
`sys.modules` when the script exits on `--help` or on a bad flag is the point
of these tests, and only a fresh interpreter can tell.
"""

import ast
import glob
import json
import os
import subprocess
import sys

import pytest

from slimkit.datasets import dataset_factory
from slimkit.flags import choices
from slimkit.nets import nets_factory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPTS = ('train_image_classifier.py', 'eval_image_classifier.py',
           'export_inference_graph.py', 'print_model.py', 'classify_image.py',
           'download_and_convert_data.py', 'compare_methods.py')

# Runs a script as __main__ with argv; at exit (after --help or a flag error
# ended it) prints whether TensorFlow or Keras was imported, and the enums.
_RUNNER = r'''
import atexit, json, runpy, sys

def report():
  from absl import flags
  enums = {name: sorted(flags.FLAGS[name].parser.enum_values)
           for name in ('model_name', 'preprocessing_name', 'dataset_name')
           if name in flags.FLAGS}
  print('REPORT' + json.dumps({
      'tensorflow': 'tensorflow' in sys.modules,
      'keras': 'keras' in sys.modules, 'enums': enums}))

atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def _run(script, *args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, '-c', _RUNNER, script, *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=120)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('REPORT')]
  assert lines, proc.stderr[-3000:]
  return proc, json.loads(lines[-1][len('REPORT'):])


def _typo_case(script):
  """A flag of `script` given a typo'd enum value, or None."""
  if script == 'classify_image.py':
    return None  # no enum flags
  if script == 'download_and_convert_data.py':
    return 'dataset_name', 'cifar1000'
  return 'model_name', 'lenett'


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_and_flag_errors_come_before_tensorflow(script):
  proc, report = _run(script, '--help')
  assert proc.returncode == 0, proc.stderr[-2000:]  # help is not an error
  assert not report['tensorflow'] and not report['keras'], report
  # --help lists the script's own flags (key flags adopted from the
  # package), not only absl's.
  own = {'classify_image.py': '--saved_model_dir',
         'print_model.py': '--model_name'}.get(script, '--dataset_dir')
  assert own in proc.stdout, proc.stdout[-2000:]

  proc, report = _run(script, '--no_such_flag=1')
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'no_such_flag' in proc.stderr
  assert not report['tensorflow'] and not report['keras'], report

  typo = _typo_case(script)
  if typo:
    name, value = typo
    proc, report = _run(script, f'--{name}={value}')
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[0]
    assert f'--{name}={value}' in error and value[:-1] in error, error
    assert not report['tensorflow'] and not report['keras'], report


def test_a_missing_flagfile_is_one_plain_error_line():
  proc, _ = _run('compare_methods.py', '--flagfile=/no/such.flags')
  assert proc.returncode == 2
  assert proc.stderr.splitlines()[0] == (
      'compare_methods.py: error: Unable to open flagfile: [Errno 2] No such '
      "file or directory: '/no/such.flags'")


@pytest.mark.parametrize('script', [s for s in SCRIPTS
                                    if _typo_case(s) == ('model_name',
                                                         'lenett')])
def test_model_name_is_an_enum_of_the_registry(script):
  _, report = _run(script, '--no_such_flag=1')
  assert report['enums']['model_name'] == nets_factory.list_networks()
  if 'dataset_name' in report['enums']:
    assert report['enums']['dataset_name'] == dataset_factory.list_datasets()
  if 'preprocessing_name' in report['enums']:
    from slimkit.preprocessing import preprocessing_factory
    assert report['enums']['preprocessing_name'] == sorted(
        set(preprocessing_factory.list_preprocessing()) |
        set(nets_factory.list_networks()))


def test_the_tensorflow_free_choices_match_the_library():
  from slimkit import seeds
  from slimkit.export import tflite
  from slimkit.preprocessing import preprocessing_factory
  from slimkit.training import precision
  assert list(choices.PREPROCESSING_STYLES) == (
      preprocessing_factory.list_preprocessing())
  assert choices.PRECISIONS == tuple(precision.PRECISIONS)
  assert choices.TFLITE_QUANTIZE_MODES == tuple(tflite.QUANTIZE_MODES)
  assert choices.TFLITE_IO_TYPES == tuple(tflite.IO_TYPES)
  assert choices.MAX_SEED == seeds.MAX_SEED


def _uses_of_flags(path):
  """(line, enclosing top-level function or None) of every `FLAGS` read."""
  with open(path) as f:
    tree = ast.parse(f.read())
  uses = []
  for node in tree.body:
    for sub in ast.walk(node):
      if isinstance(sub, ast.Name) and sub.id == 'FLAGS' and isinstance(
          sub.ctx, ast.Load):
        name = node.name if isinstance(
            node, (ast.FunctionDef, ast.ClassDef)) else None
        uses.append((sub.lineno, name))
  return uses


def test_flags_are_defined_in_slimkit_flags_and_read_only_in_main():
  library = [p for folder in ('slimkit', 'nets', 'datasets', 'preprocessing',
                              'deployment')
             for p in glob.glob(os.path.join(ROOT, folder, '**', '*.py'),
                                recursive=True)
             if os.sep + os.path.join('slimkit', 'flags') + os.sep not in p]
  scripts = [os.path.join(ROOT, s) for s in SCRIPTS]
  bad = []
  for path in library + scripts:
    with open(path) as f:
      text = f.read()
    if 'DEFINE_' in text:
      bad.append(f'{path}: defines a flag')
    for line, function in _uses_of_flags(path):
      if function != 'main':
        bad.append(f'{path}:{line}: FLAGS read outside main()')
  assert not bad, '\n'.join(bad)
