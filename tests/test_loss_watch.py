"""The loss watch blames the updates only for what the updates did."""

import math

from slimkit.training import loss_watch


def test_a_high_initial_loss_is_not_blamed_on_the_learning_rate():
  # The same 13.33 at learning rate 0.01 and 1e-9: the initial weights'.
  watch = loss_watch.LossWatch(num_classes=10)
  note = watch.initial(13.33)
  assert '13.3300' in note and 'initial weights before any update' in note
  assert 'learning rate does not enter' in note
  assert watch.check(10, 13.33) is None  # no "blew up", no "lower it"
  assert watch.check(20, 13.2) is None


def test_updates_that_blow_the_logits_up_are_still_warned_about():
  for initial in (2.4, 13.33):  # a normal start, and a high one
    watch = loss_watch.LossWatch(num_classes=10)
    watch.initial(initial)
    message = watch.check(10, initial + math.log(10) + 5.0)
    assert message and 'blew up' in message and '--learning_rate' in message
    assert f'up from {initial:.4f} at the initial weights' in message
    # It names the number: the cross-entropy, not the logged total loss.
    assert 'cross-entropy (without the regularisation' in message


def test_an_ordinary_initial_loss_needs_no_note():
  watch = loss_watch.LossWatch(num_classes=10)
  assert watch.initial(math.log(10) + 0.1) is None
