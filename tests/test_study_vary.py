"""A command-line `--vary` replaces a flagfile's axis of the same name."""

import os
import sys

import pytest

from slimkit.study import grid
from tests import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_command_line_replaces_the_flagfiles_axis():
  # absl has expanded the flagfile in place: its two axes come first.
  parsed = ['kernel_size=3,5', 'optimizer=sgd,adam', 'kernel_size=3,7']
  values, replaced = grid.command_line_overrides(
      parsed, ['--flagfile=studies/kernels.flags', '--vary=kernel_size=3,7'])
  assert values == ['optimizer=sgd,adam', 'kernel_size=3,7']
  assert replaced == ['kernel_size']
  # The command line naming the same values as the file: one axis, not two.
  values, replaced = grid.command_line_overrides(
      ['kernel_size=3,5', 'kernel_size=3,5'],
      ['--flagfile=f', '--vary=kernel_size=3,5'])
  assert values == ['kernel_size=3,5'] and replaced == ['kernel_size']


@pytest.mark.parametrize('parsed,typed', [
    # Twice on the command line, twice in the flagfile: still an error.
    (['kernel_size=3', 'kernel_size=5'],
     ['--vary=kernel_size=3', '--vary=kernel_size=5']),
    (['kernel_size=3', 'kernel_size=5'], ['--flagfile=f']),
])
def test_a_name_repeated_in_one_place_stays_an_error(parsed, typed):
  values, replaced = grid.command_line_overrides(parsed, typed)
  assert values == parsed and not replaced
  with pytest.raises(grid.GridError, match='twice'):
    grid.check_axes([grid.parse_vary(v) for v in values], flag_values={},
                    model_name='cifarnet')


def test_compare_methods_says_it_replaced_the_axis(tmp_path):
  # The study stops at --dataset_name=synthetic, after resolving its grid.
  result = script_runner.run(
      [sys.executable, os.path.join(ROOT, 'compare_methods.py'),
       '--flagfile=' + os.path.join(ROOT, 'studies', 'kernels.flags'),
       '--vary=kernel_size=3', '--dataset_name=synthetic',
       f'--study_dir={tmp_path / "study"}'],
      capture_output=True, text=True, cwd=ROOT, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert result.returncode != 0
  assert ("--vary=kernel_size=... on the command line replaces the "
          "flagfile's --vary of kernel_size") in result.stderr
  assert 'twice' not in result.stderr
  assert not (tmp_path / 'study').exists()
