"""Bad flags stop the scripts with exit status 2, naming the flag, first.

Each script's flag parsing and checks run in one subprocess for all cases
(one TensorFlow import per script): the cases are parsed one after the other
with the script's own parser and `main()`, which must stop with status 2 and
a message naming the flag before it writes anything. Two cases also run as
real command lines to prove the exit code and that no file was written.
"""

import json
import os
import sys

import pytest

from tests import tiny_records
from tests.reliability import rel_common

# Every numeric flag with an invalid value, and every name flag with an
# unknown name: (flag, value).
TRAIN_CASES = [
    ('batch_size', '-1'), ('batch_size', '0'), ('learning_rate', '-0.1'),
    ('learning_rate', '0'), ('num_clones', '0'), ('num_clones', '-2'),
    ('max_number_of_steps', '-5'), ('max_number_of_steps', '0'),
    ('weight_decay', '-1'), ('num_readers', '0'),
    ('num_preprocessing_threads', '0'), ('log_every_n_steps', '0'),
    ('save_interval_secs', '-1'), ('save_summaries_secs', '-1'),
    ('opt_epsilon', '0'), ('momentum', '-0.1'), ('momentum', '1.5'),
    ('rmsprop_momentum', '-1'), ('rmsprop_decay', '1.5'),
    ('adam_beta1', '1.0'), ('adam_beta2', '-0.1'), ('adadelta_rho', '2'),
    ('adagrad_initial_accumulator_value', '-1'), ('ftrl_l1', '-1'),
    ('ftrl_l2', '-1'), ('ftrl_initial_accumulator_value', '-1'),
    ('ftrl_learning_rate_power', '1'), ('end_learning_rate', '-1'),
    ('label_smoothing', '1.5'), ('label_smoothing', '-0.5'),
    ('learning_rate_decay_factor', '0'),
    ('learning_rate_decay_factor', '-1'), ('num_epochs_per_decay', '0'),
    ('moving_average_decay', '1.5'), ('moving_average_decay', '0'),
    ('replicas_to_aggregate', '0'), ('worker_replicas', '0'),
    ('num_ps_tasks', '-1'), ('task', '-1'), ('train_image_size', '0'),
    ('labels_offset', '-1'), ('labels_offset', '10'),
    ('model_name', 'resnet_v1_51'), ('dataset_name', 'cifar1000'),
    ('optimizer', 'adamw_typo'), ('learning_rate_decay_type', 'cosine_typo'),
    ('preprocessing_name', 'inceptoin'), ('dataset_split_name', 'trian'),
    ('collective_timeout_secs', '-1'), ('num_classes', '0'),
    ('precision', 'float8'), ('job_name', 'boss'),
    ('warmup_epochs', '-1'), ('lion_beta1', '0'), ('lion_beta1', '1.5'),
    ('lion_beta2', '1.0'),
]
EVAL_CASES = [
    ('batch_size', '0'), ('batch_size', '-3'), ('max_num_batches', '0'),
    ('eval_image_size', '0'), ('eval_interval_secs', '-1'),
    ('eval_timeout_secs', '-1'), ('max_number_of_evaluations', '0'),
    ('moving_average_decay', '-0.1'), ('moving_average_decay', '1.0'),
    ('labels_offset', '-1'), ('num_preprocessing_threads', '0'),
    ('model_name', 'lenet5'), ('dataset_name', 'mnits'),
    ('preprocessing_name', 'vggg'), ('dataset_split_name', 'validaton'),
]
CONVERT_CASES = [
    ('dataset_name', 'cifar1000'), ('num_workers', '0'), ('num_shards', '0'),
    ('train_shards', '-1'), ('validation_shards', '0'),
    ('validation_fraction', '1.5'), ('validation_fraction', '-0.1'),
]

# Runs every case of one script in this one process: parse with the script's
# parser, then its main(); both must stop with status 2 before writing.
_RUNNER = r'''
import contextlib, io, json, os, runpy, sys
script = sys.argv[1]
cases, base = json.loads(sys.argv[2]), json.loads(sys.argv[3])
sys.argv = [script]
module = runpy.run_path(script, run_name='flag_check')
from absl import flags
FLAGS = flags.FLAGS
parser = module.get('_parse_flags') or __import__(
    'slimkit.flags', fromlist=['parse_flags']).parse_flags
results = []
for flag, value in cases:
  FLAGS.unparse_flags()
  argv = [script] + [f'--{k}={v}' for k, v in base.items() if k != flag]
  argv.append(f'--{flag}={value}')
  err = io.StringIO()
  code = 0
  with contextlib.redirect_stderr(err):
    try:
      rest = parser(argv)
      code = module['main'](rest)
    except SystemExit as e:
      code = e.code
    except Exception as e:  # A crash: reported as such.
      code = f'{type(e).__name__}: {e}'
  results.append([flag, value, code, err.getvalue()])
print('RESULTS' + json.dumps(results))
'''


@pytest.fixture(scope='module')
def mnist_dir(tmp_path_factory):
  return tiny_records.write_dataset(tmp_path_factory.mktemp('mnist'), 'mnist',
                                    {'train': 8, 'test': 8})


def _run_cases(script, cases, base):
  proc = rel_common.run([sys.executable, '-c', _RUNNER, script,
                         json.dumps(cases), json.dumps(base)], timeout=300)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULTS')]
  assert lines, proc.stderr[-3000:]
  return json.loads(lines[-1][len('RESULTS'):])


def _check(results, out_dir):
  bad = []
  for flag, value, code, message in results:
    if code != 2 or f'--{flag}' not in message and flag not in message:
      bad.append(f'--{flag}={value}: exit {code!r}, message {message!r}')
  assert not bad, '\n'.join(bad)
  assert not os.path.exists(out_dir), (
      f'a file was written: {rel_common.tree(out_dir)}')


def test_every_bad_train_flag_exits_2_naming_it(mnist_dir, tmp_path):
  train_dir = str(tmp_path / 'train')
  base = dict(train_dir=train_dir, dataset_name='mnist', model_name='lenet',
              dataset_dir=mnist_dir, max_number_of_steps=1)
  _check(_run_cases(rel_common.TRAIN, TRAIN_CASES, base), train_dir)


def test_every_bad_eval_flag_exits_2_naming_it(mnist_dir, tmp_path):
  eval_dir = str(tmp_path / 'eval')
  ckpt_dir = tmp_path / 'ckpt'
  ckpt_dir.mkdir()
  base = dict(checkpoint_path=str(ckpt_dir), eval_dir=eval_dir,
              dataset_name='mnist', model_name='lenet',
              dataset_dir=mnist_dir)
  _check(_run_cases(rel_common.EVAL, EVAL_CASES, base), eval_dir)


def test_every_bad_convert_flag_exits_2_naming_it(tmp_path):
  dataset_dir = str(tmp_path / 'data')
  base = dict(dataset_name='digits', dataset_dir=dataset_dir)
  _check(_run_cases(rel_common.CONVERT, CONVERT_CASES, base), dataset_dir)


@pytest.mark.parametrize('script,flag', [
    (rel_common.TRAIN, '--batch_size=-4'),
    (rel_common.TRAIN, '--model_name=incepton_v3'),
])
def test_a_bad_command_line_exits_2_before_writing(mnist_dir, tmp_path,
                                                    script, flag):
  train_dir = tmp_path / 'train'
  proc = rel_common.run([sys.executable, script, f'--train_dir={train_dir}',
                         '--dataset_name=mnist', f'--dataset_dir={mnist_dir}',
                         '--model_name=lenet', flag])
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert flag.split('=')[0] in proc.stderr
  assert not train_dir.exists()
