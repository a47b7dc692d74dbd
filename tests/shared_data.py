"""Data built once per test run and shared by every pytest-xdist worker.

Under xdist each worker has its own session, so a session-scoped fixture
alone would still build its data once per worker. `build_once` builds into
the run's common temporary folder (the parent of every worker's base temp,
as pytest-xdist's documentation shows) under an exclusive `fcntl` lock: the
first worker builds, the others wait and reuse. Without xdist the session's
own base temp is used, so no run ever reuses data of an earlier run.

Users only read shared data; a test that changes a dataset builds its own.
"""

import fcntl
import os
import shutil


def build_once(tmp_path_factory, name, build):
  """Returns the folder `name`, made by `build(folder)` once per test run.

  Args:
    tmp_path_factory: pytest's session-scoped factory.
    name: The folder's name in the run's common temporary folder.
    build: Called with the folder's path (a str) when it is not built yet;
      it creates the folder's contents.

  Returns:
    The folder's path, as a str.
  """
  base = tmp_path_factory.getbasetemp()
  root = base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base
  target = root / name
  done = root / f'{name}.done'
  with open(root / f'{name}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if not done.exists():
        # A worker that died while building left a partial folder.
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        build(str(target))
        done.touch()
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return str(target)
