"""Runs a script as `subprocess.run` would, without importing TensorFlow again.

Most script tests run `python script.py --flags` and read the return code,
stdout and stderr. Started as a new interpreter, every such run first spends
~5 s (more on a loaded machine) importing TensorFlow. Here each run is a
process forked from a server that imported TensorFlow, Keras and a few
other heavy libraries (`_PRELOAD`) once (`multiprocessing`'s forkserver with
a preload): the script still runs in its
own process, with its own absl `FLAGS`, environment, working directory and
file descriptors 1 and 2, and exits with its own code; only the import is
shared. The server imports nothing of this repository, so every run imports
the code under test afresh.

Use a real subprocess instead where the process itself is the point: signals
sent to it, timing of what happens before TensorFlow is imported, or settings
TensorFlow reads when it is imported. Forked runs also share the server's
Python hash seed: a test that checks two runs agree bit for bit runs one of
them in a new interpreter (as tests/test_reproducibility.py does).
"""

import atexit
import multiprocessing
import multiprocessing.forkserver
import os
import runpy
import subprocess
import sys
import tempfile
import traceback

# What the scripts import that costs seconds and holds no state of theirs:
# TensorFlow and Keras for every script; scipy's statistics, matplotlib's
# non-interactive figures and TensorBoard's summary ops for compare_methods.py
# (a `--report_only` run took 3.5-5 s without them, 0.6-2 s with them).
_PRELOAD = ['tensorflow', 'keras', 'scipy.stats', 'matplotlib.figure',
            'matplotlib.backends.backend_agg', 'tensorboard.summary.v2']
_context = None


def _get_context():
  """The forkserver context, its server started with TensorFlow imported."""
  global _context  # noqa: PLW0603 - one server per test process, made lazily.
  if _context is None:
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload(_PRELOAD)
    # The server is started with the environment the tests give scripts, so
    # TensorFlow's import-time logging is as quiet as in a subprocess.
    saved = os.environ.get('TF_CPP_MIN_LOG_LEVEL')
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'
    try:
      multiprocessing.forkserver.ensure_running()
    finally:
      if saved is None:
        del os.environ['TF_CPP_MIN_LOG_LEVEL']
      else:
        os.environ['TF_CPP_MIN_LOG_LEVEL'] = saved
    _context = context
  return _context


def _exit_code(code):
  """The process exit code of `sys.exit(code)`, as the interpreter makes it."""
  if code is None:
    return 0
  if isinstance(code, int):
    return code
  print(code, file=sys.stderr)
  return 1


def _child(argv, env, cwd, out_path, err_path):
  """Runs `argv` (a script path or `-c code`, then arguments) and exits."""
  for fd, path in ((1, out_path), (2, err_path)):
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(target, fd)
    os.close(target)
  os.environ.clear()
  os.environ.update(env)
  os.chdir(cwd)
  code = 0
  try:
    if argv[0] == '-c':
      sys.argv = ['-c', *argv[2:]]
      sys.path.insert(0, '')
      exec(compile(argv[1], '<string>', 'exec'),  # noqa: S102 - as `python -c`.
           {'__name__': '__main__', '__builtins__': __builtins__})
    else:
      script = os.path.abspath(argv[0])
      sys.argv = [script, *argv[1:]]
      sys.path.insert(0, os.path.dirname(script))
      runpy.run_path(script, run_name='__main__')
  except SystemExit as e:
    code = _exit_code(e.code)
  except BaseException:  # noqa: BLE001 - reported as the interpreter would.
    traceback.print_exc()
    code = 1
  finally:
    atexit._run_exitfuncs()  # noqa: SLF001 - os._exit skips them otherwise.
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except (OSError, ValueError):
        pass
  os._exit(code)


def run(args, *, env=None, cwd=None, timeout=None, **unused):
  """Runs `[sys.executable, script_or_-c, ...]` like `subprocess.run`.

  Args:
    args: The command line; its first item is the Python interpreter.
    env: The script's environment (default: this process's).
    cwd: The script's working directory (default: this process's).
    timeout: Seconds before the script is killed and
      `subprocess.TimeoutExpired` raised.
    **unused: `capture_output`, `text`, `check` and the like, accepted so a
      `subprocess.run` call can be switched over unchanged: output is always
      captured as text and the return code is never checked.

  Returns:
    A `subprocess.CompletedProcess` with `returncode`, `stdout` and `stderr`.
  """
  del unused
  args = [str(a) for a in args]
  if args[0] != sys.executable or len(args) < 2 or (
      args[1].startswith('-') and args[1] != '-c'):
    raise ValueError(f'not a Python script command line: {args[:3]}')
  env = dict(os.environ if env is None else env)
  cwd = str(cwd or os.getcwd())
  with tempfile.TemporaryDirectory(prefix='script_runner_') as tmp:
    out_path = os.path.join(tmp, 'stdout')
    err_path = os.path.join(tmp, 'stderr')
    process = _get_context().Process(
        target=_child, args=(args[1:], env, cwd, out_path, err_path))
    process.start()
    process.join(timeout)
    if process.is_alive():
      process.kill()
      process.join()
      raise subprocess.TimeoutExpired(args, timeout)

    def read(path):
      if not os.path.exists(path):
        return ''
      with open(path, encoding='utf-8', errors='replace') as f:
        return f.read()

    return subprocess.CompletedProcess(args, process.exitcode, read(out_path),
                                       read(err_path))
