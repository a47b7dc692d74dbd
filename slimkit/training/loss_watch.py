"""Warnings for the two ways a run fails quietly: a diverged start, a dead net.

An untrained classifier predicts about the uniform distribution, whose
cross-entropy is `ln(num_classes)` (label smoothing does not change it). Two
patterns of the logged cross-entropy are worth a warning:

* far above that at the first log lines: the first updates blew the logits
  up (LeNet's initial weights at momentum 0.9 and lr 0.01 sometimes start at
  20.8 for 10 classes);
* exactly at it for many log lines: the net outputs the same logits for
  every image, usually because every ReLU died after such a start (the loss
  then sits at 2.3026 for good), or because the learning rate is too small to
  move it.

  watch = LossWatch(num_classes=10)
  message = watch.check(step, cross_entropy)   # a warning, or None
"""

import math


class LossWatch:
  """Watches the cross-entropy at the log lines of one training process."""

  def __init__(self, num_classes, *, aux_weight=0.0, first_lines=3,
               stuck_lines=5, stuck_tolerance=1e-3):
    """Creates the watch.

    Args:
      num_classes: Number of logits.
      aux_weight: Weight of an auxiliary head's loss included in the
        cross-entropy (Inception's 0.4), whose chance level it raises too.
      first_lines: How many first log lines are checked for a diverged
        start.
      stuck_lines: Consecutive log lines at chance level before warning.
      stuck_tolerance: Relative distance from the chance level that counts
        as "at" it (a learning net moves further within a few steps).
    """
    self.chance = math.log(num_classes) * (1.0 + aux_weight)
    self.num_classes = num_classes
    self.first_lines = first_lines
    self.stuck_lines = stuck_lines
    self.stuck_tolerance = stuck_tolerance
    self._lines = 0
    self._stuck_since = None
    self._stuck_count = 0
    self._warned = set()

  def check(self, step, loss):
    """Records the cross-entropy `loss` logged at global `step`.

    Args:
      step: The global step of the log line.
      loss: Its cross-entropy (without regularisation), a float.

    Returns:
      A warning to log (each kind at most once per process), or None.
    """
    self._lines += 1
    if (self._lines <= self.first_lines and 'diverged' not in self._warned
        and loss > max(2.0 * self.chance, self.chance + 2.0)):
      self._warned.add('diverged')
      return (f'At global step {step} the loss is {loss:.4f}, far above '
              f'{self.chance:.4f} (ln {self.num_classes}, the loss of a net '
              'that predicts every class alike): the first updates probably '
              'blew up the logits. Try a lower --learning_rate (or '
              '--warmup_epochs), or check the initialisation; if the loss '
              f'then sits at {self.chance:.4f}, the net has died.')
    if abs(loss - self.chance) <= self.stuck_tolerance * self.chance:
      if self._stuck_since is None:
        self._stuck_since = step
      self._stuck_count += 1
    else:
      self._stuck_since, self._stuck_count = None, 0
    if self._stuck_count >= self.stuck_lines and 'stuck' not in self._warned:
      self._warned.add('stuck')
      return (f'The loss has stayed at {self.chance:.4f} (ln '
              f'{self.num_classes}) from global step {self._stuck_since} to '
              f'{step}: the net gives every image the same prediction. '
              'Usually its ReLUs died after a diverged start (lower '
              '--learning_rate, or check the initialisation); or the '
              'learning rate is too small to move it (with adam, rmsprop '
              'or adadelta, see --opt_epsilon).')
    return None
