"""tests/script_runner.py behaves as `subprocess.run` of a new interpreter.

Each case runs the same command both ways and compares what a test reads:
the return code, stdout and stderr.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from tests import script_runner

CASES = {
    'exit_code': 'import sys; print("out"); sys.exit(3)',
    'exit_message': 'import sys; sys.exit("a message")',
    'fd_level_writes': 'import os; os.write(1, b"one\\n"); os.write(2, b"two")',
    'exception': 'raise ValueError("bad value 7")',
    'argv': 'import sys; print(sys.argv[1:])',
}


def _both(args, **kwargs):
  kwargs.setdefault('env', dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  real = subprocess.run(args, capture_output=True, text=True, check=False,
                        timeout=120, **kwargs)
  forked = script_runner.run(args, timeout=120, **kwargs)
  return real, forked


@pytest.mark.parametrize('name', sorted(CASES))
def test_return_code_and_output_are_a_new_interpreters(name):
  real, forked = _both([sys.executable, '-c', CASES[name], 'a', '--b=c'])
  assert forked.returncode == real.returncode
  assert forked.stdout == real.stdout
  if name == 'exception':  # The traceback's last line names the error.
    assert forked.stderr.splitlines()[-1] == real.stderr.splitlines()[-1]
  else:
    assert forked.stderr == real.stderr


def test_a_script_gets_its_own_flags_environment_and_directory(tmp_path):
  script = tmp_path / 'script.py'
  script.write_text(textwrap.dedent('''
      import os
      from absl import app, flags
      flags.DEFINE_integer('batch_size', 32, 'Defined by every run.')
      def main(argv):
        del argv
        print(flags.FLAGS.batch_size, os.environ['SOME_SETTING'],
              os.getcwd(), __name__)
      if __name__ == '__main__':
        app.run(main)
  '''))
  work = tmp_path / 'work'
  work.mkdir()
  env = dict(os.environ, SOME_SETTING='x')
  outputs = []
  for size in (100, 7):  # The flag is defined again: no duplicate error.
    real, forked = _both([sys.executable, str(script), f'--batch_size={size}'],
                         env=env, cwd=work)
    assert forked.returncode == real.returncode == 0, forked.stderr
    assert forked.stdout == real.stdout
    outputs.append(forked.stdout.split())
  assert outputs == [['100', 'x', str(work), '__main__'],
                     ['7', 'x', str(work), '__main__']]
  assert 'SOME_SETTING' not in os.environ
  bad_real, bad_forked = _both([sys.executable, str(script), '--batch_sise=1'],
                               env=env)
  assert bad_forked.returncode == bad_real.returncode == 1
  assert bad_forked.stderr == bad_real.stderr


def test_a_script_over_its_time_is_killed():
  with pytest.raises(subprocess.TimeoutExpired):
    script_runner.run([sys.executable, '-c', 'import time; time.sleep(60)'],
                      timeout=1)


def test_only_python_command_lines_are_taken():
  with pytest.raises(ValueError, match='not a Python script command line'):
    script_runner.run(['bash', '-c', 'true'])
  with pytest.raises(ValueError, match='not a Python script command line'):
    script_runner.run([sys.executable, '-m', 'pytest'])
