"""A study folder belongs to one study: another is refused, untouched."""

import hashlib
import json
import os
import sys

import pytest

from slimkit.study import grid
from slimkit.study import study_file
from tests import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _described(seeds=(0, 1), kernel_sizes=('3', '5'), learning_rate='0.1'):
  axes = [grid.Axis('kernel_size', tuple(kernel_sizes), is_model_option=True)]
  return study_file.describe({'learning_rate': learning_rate}, axes, seeds)


def test_differences_separate_another_study_from_a_larger_one():
  old = _described()
  assert study_file.differences(old, _described()) == ([], [])
  changes, growth = study_file.differences(old, _described(
      learning_rate='0.01'))
  assert changes == ["--learning_rate is '0.1' there, '0.01' here"]
  assert not growth
  changes, growth = study_file.differences(old, _described(seeds=(0, 1, 2)))
  assert not changes and growth == ['--seeds=0,1 there, 0,1,2 here']
  changes, growth = study_file.differences(old, _described(
      kernel_sizes=('3', '7')))  # a value gone: its runs are not this study's
  assert changes == ['--vary=kernel_size=3,5 there, 3,7 here']
  new = _described()
  new['vary'].append(['activation', ['relu', 'elu']])  # run names change
  changes, _ = study_file.differences(old, new)
  assert changes == ['--vary axes are kernel_size there, kernel_size, '
                     'activation here']


def test_growing_needs_extend_study(tmp_path):
  study_file.write(str(tmp_path), _described())
  larger = _described(seeds=(0, 1, 2), kernel_sizes=('3', '5', '7'))
  with pytest.raises(study_file.StudyDirError, match='--extend_study'):
    study_file.check(str(tmp_path), larger)
  study_file.check(str(tmp_path), larger, extend=True)
  with pytest.raises(study_file.StudyDirError, match='holds another study'):
    study_file.check(str(tmp_path), _described(seeds=(5,)), extend=True)
  (tmp_path / 'other').mkdir()
  (tmp_path / 'other' / 'notes.txt').write_text('mine')
  with pytest.raises(study_file.StudyDirError, match='not a study'):
    study_file.check(str(tmp_path / 'other'), larger)


def _tree(path):
  return {os.path.relpath(os.path.join(d, f), path): hashlib.sha256(
      open(os.path.join(d, f), 'rb').read()).hexdigest()
          for d, _, files in os.walk(path) for f in files}


def _compare_methods(study_dir, *extra):
  return script_runner.run(
      [sys.executable, os.path.join(ROOT, 'compare_methods.py'),
       '--dataset_name=digits', f'--dataset_dir={study_dir}/no_data',
       '--model_name=lenet', '--max_number_of_steps=10',
       f'--study_dir={study_dir}', *extra],
      capture_output=True, text=True, cwd=ROOT, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))


def test_a_folder_of_another_study_is_refused_and_left_as_it_was(tmp_path):
  study = tmp_path / 'kernels'
  first = _compare_methods(study, '--vary=optimizer=sgd,adam', '--seeds=0',
                           '--report_only')
  assert first.returncode == 0, first.stderr
  (study / 'runs' / 'mine').mkdir(parents=True)
  (study / 'runs' / 'mine' / 'flags.txt').write_text('--optimizer=sgd\n')
  before = _tree(study)
  assert {'study.json', 'report.md', 'results.csv'} <= set(before)
  refused = _compare_methods(study, '--vary=activation=relu,elu',
                             '--seeds=0')
  assert refused.returncode == 2
  assert 'holds another study (--vary axes are optimizer there, ' \
         'activation here)' in refused.stderr
  assert _tree(study) == before
  # More seeds keep the existing runs valid: only with --extend_study.
  refused = _compare_methods(study, '--vary=optimizer=sgd,adam',
                             '--seeds=0,1', '--report_only')
  assert refused.returncode == 2 and '--extend_study' in refused.stderr
  assert _tree(study) == before
  grown = _compare_methods(study, '--vary=optimizer=sgd,adam', '--seeds=0,1',
                           '--report_only', '--extend_study')
  assert grown.returncode == 0, grown.stderr
  assert json.loads((study / 'study.json').read_text())['seeds'] == [0, 1]
