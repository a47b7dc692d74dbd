"""SIGTERM and Ctrl-C as a request to stop training between steps."""

import signal
import threading

from absl import logging


class StopOnSignal:
  """Turns SIGTERM and the first Ctrl-C into a request to stop between steps.

  The loop checks `requested` between steps, then saves and returns; a
  second Ctrl-C interrupts at once (KeyboardInterrupt). Only the main thread
  can install handlers; elsewhere this does nothing. (One process only: on a
  multi-worker cluster each worker stops on its own signal, and the workers
  agree on the step; with parameter servers the coordinator's signal counts.)

  Use as a context manager; `requested` is None or the signal's name.
  """

  def __init__(self):
    self.requested = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.requested == 'SIGINT' and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = name
    logging.warning('Received %s: stopping after this step and saving a '
                    'checkpoint (Ctrl-C again to abandon the step).', name)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}
