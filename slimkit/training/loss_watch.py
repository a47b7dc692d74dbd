"""Warnings for the two ways a run fails quietly: a diverged start, a dead net.

An untrained classifier predicts about the uniform distribution, whose
cross-entropy is `ln(num_classes)` (label smoothing does not change it). Two
patterns of the logged cross-entropy are worth a warning:

* far above that at the first log lines, and above what the initial
  weights gave: the first updates blew the logits up (LeNet's initial
  weights at momentum 0.9 and lr 0.01 sometimes reach 20.8 for 10 classes).
  A loss that is high at the initial weights already (before any update) is
  the initialisation's, whatever the learning rate: `initial` says so as
  information, and the updates are judged against it;
* exactly at it for many log lines: the net outputs the same logits for
  every image, usually because every ReLU died after such a start (the loss
  then sits at 2.3026 for good), or because the learning rate is too small to
  move it.

  watch = LossWatch(num_classes=10)
  note = watch.initial(cross_entropy_of_step_1)  # information, or None
  message = watch.check(step, cross_entropy)     # a warning, or None

The numbers are the cross-entropy of the batch, without the regularisation
that the log line's total loss adds.
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
    self._initial = None

  def _far_above_chance(self, loss):
    return loss > max(2.0 * self.chance, self.chance + 2.0)

  def initial(self, loss):
    """Records the cross-entropy of a fresh run's first step.

    That step's loss is computed from the initial weights, before any update,
    so it says nothing about the learning rate.

    Args:
      loss: The cross-entropy of global step 1 (without regularisation).

    Returns:
      An informational message when it is far above chance, else None.
    """
    self._initial = loss
    if not self._far_above_chance(loss):
      return None
    return (f'The cross-entropy at global step 1 is {loss:.4f}, computed from '
            'the initial weights before any update; a net that predicts every '
            f'class alike has {self.chance:.4f} (ln {self.num_classes}). The '
            'initial logits are large (the initialisation or the input '
            'scale); the learning rate does not enter this number, and it is '
            'harmless if the loss falls over the next log lines.')

  def check(self, step, loss):
    """Records the cross-entropy `loss` logged at global `step`.

    Args:
      step: The global step of the log line.
      loss: Its cross-entropy (without regularisation), a float.

    Returns:
      A warning to log (each kind at most once per process), or None.
    """
    self._lines += 1
    # Above chance only by as much as the initial weights were, the updates
    # have not made it worse: no lower learning rate would help.
    rose = self._initial is None or loss > self._initial + self.chance
    if (self._lines <= self.first_lines and 'diverged' not in self._warned
        and self._far_above_chance(loss) and rose):
      self._warned.add('diverged')
      since = ('' if self._initial is None else
               f', up from {self._initial:.4f} at the initial weights')
      return (f'At global step {step} the cross-entropy (without the '
              f'regularisation in the logged loss) is {loss:.4f}{since}, far '
              f'above {self.chance:.4f} (ln {self.num_classes}, the loss of a '
              'net that predicts every class alike): the first updates '
              'probably blew up the logits. Try a lower --learning_rate (or '
              '--warmup_epochs); if the loss then sits at '
              f'{self.chance:.4f}, the net has died.')
    if abs(loss - self.chance) <= self.stuck_tolerance * self.chance:
      if self._stuck_since is None:
        self._stuck_since = step
      self._stuck_count += 1
    else:
      self._stuck_since, self._stuck_count = None, 0
    if self._stuck_count >= self.stuck_lines and 'stuck' not in self._warned:
      self._warned.add('stuck')
      return (f'The cross-entropy has stayed at {self.chance:.4f} (ln '
              f'{self.num_classes}) from global step {self._stuck_since} to '
              f'{step}: the net gives every image the same prediction. '
              'Usually its ReLUs died after a diverged start (lower '
              '--learning_rate, or check the initialisation); or the '
              'learning rate is too small to move it (with adam, rmsprop '
              'or adadelta, see --opt_epsilon).')
    return None
